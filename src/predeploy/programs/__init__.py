"""Programs predeploy runs (one runner over sh): PostgreSQL client tools, pm2, squawk, git."""
