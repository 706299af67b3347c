-- CreateTable
CREATE TABLE "users" (
    "id" BIGSERIAL PRIMARY KEY,
    "email" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- CreateIndex
CREATE UNIQUE INDEX "users_email_key" ON "users"("email");
