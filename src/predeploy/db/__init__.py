"""The database: connections, the embedded dev server, the server's messages, advisory locks,
catalogue reads, the audit trail and the protection marker."""
