"""Operations: check, health, pm2, deploy and the nightly maintenance."""
