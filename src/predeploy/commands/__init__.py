"""One module per verb, and the run lifecycle every verb that changes a database goes through."""
