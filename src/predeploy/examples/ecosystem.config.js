// pm2 ecosystem file: the app, and a deploy section whose post-deploy hook hands the
// database and the reload to predeploy.
//
//   pm2 start ecosystem.config.js                 first start on the server
//   pm2 deploy ecosystem.config.js production     later deploys, from your machine
//
// pm2's deploy environment name ("production", below) is pm2's own and unrelated to
// predeploy's --env: the hook names predeploy's env explicitly (prod reads .env.prod
// on the server, which holds DATABASE_URL, PREDEPLOY_PM2_APP=web and PREDEPLOY_HEALTHCHECK_URL).
//
// The hook runs on the server in <path>/current, without a terminal: `--yes` confirms
// the migration in advance (the run is logged with the deploying user's name). Its exit
// code is predeploy's (README, "Exit codes"): 0 deployed and healthy, 5 a migration
// failed (the app was not reloaded), 7 the app is not healthy after the reload, 6
// another migration holds the lock, 4 the backup failed, 2 configuration, 3 database.
// pm2 deploy stops and reports any non-zero exit; the rollback runbook is printed.
// predeploy itself, installed into the project's virtualenv as the README does
// (`python3 -m venv .venv && .venv/bin/pip install /opt/predeploy`): a checkout or a
// wheel of predeploy on the server, or the name it has on your package index.
const PREDEPLOY = '/opt/predeploy';

module.exports = {
  apps: [
    {
      name: 'web',
      script: 'server.js',
      // cluster mode makes `pm2 reload` zero-downtime; in fork mode it is a restart
      exec_mode: 'cluster',
      instances: 2,
      // a reload sends each old worker SIGINT, then SIGKILL after kill_timeout: stop
      // accepting and exit a moment later, or requests in hand fail:
      //   process.on('SIGINT', () => { server.close(); setTimeout(() => process.exit(0), 1000); });
      kill_timeout: 5000,
      env: {
        PORT: process.env.PORT || 3000,
      },
      env_production: {
        NODE_ENV: 'production',
      },
    },
  ],
  deploy: {
    production: {
      user: 'deploy',
      host: ['app1.example.com'],
      ref: 'origin/main',
      repo: 'git@git.example.com:acme/web.git',
      path: '/srv/web',
      // `pm2 deploy ecosystem.config.js production setup` makes the virtualenv once (in
      // <path>/current; the .venv/ that init ignores survives every later deploy)
      'post-setup': `python3 -m venv .venv && .venv/bin/pip install ${PREDEPLOY}`,
      // the app's packages are installed first when it has a lockfile; a failure there
      // stops the hook
      'post-deploy':
        'if [ -f package-lock.json ]; then npm ci --omit=dev; fi && ' +
        '.venv/bin/predeploy deploy --env prod --yes',
    },
  },
};
