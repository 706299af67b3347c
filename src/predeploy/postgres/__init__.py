"""PostgreSQL: sessions, client programs, the embedded dev server, catalogue reads."""
