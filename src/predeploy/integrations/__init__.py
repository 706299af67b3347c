"""Adapters to the world outside PostgreSQL: pm2, notifications (apprise), HTTP health."""
