"""Small mechanisms every layer uses: redaction, polling, atomic writes, units, the cache
folder, logging, sweeping what a killed run left behind."""
