// Creates one database user per Lapor process, each allowed only its own
// collections, and the operator's user.
//
// The table is ops/mongo/db-access.json, rendered from lapor/runtime/db_access.py
// (the same table gives `make run`'s FerretDB its access file). For every user
// listed there: a custom role of the same name with exactly its privileges
// (collection → actions; the collection "" is the database itself), and the
// user with that role alone. The operator (the `lapor` CLI, migrations) gets
// readWrite and dbAdmin on the application database. Every user is defined in
// the application database (authSource=lapor) and has no role anywhere else.
//
// The official mongo image runs /docker-entrypoint-initdb.d/* once, as root, on
// the first start with an empty data volume, before the server accepts
// outside connections. Safe to run again (roles and users are updated in
// place), e.g. after the table changed or to move from the former single
// application user:
//   docker compose exec mongo sh -c 'mongosh -u "$MONGO_INITDB_ROOT_USERNAME" \
//     -p "$MONGO_INITDB_ROOT_PASSWORD" --authenticationDatabase admin \
//     /docker-entrypoint-initdb.d/10-init-users.js'

const fs = require("fs");

// Mounted there by docker-compose.yml.
const accessFile = process.env.LAPOR_DB_ACCESS_FILE || "/etc/lapor/db-access.json";
const access = JSON.parse(fs.readFileSync(accessFile, "utf8"));
const appDb = db.getSiblingDB(access.db);

function password(variable) {
  const value = process.env[variable];
  if (!value) {
    throw new Error(`${variable} must be set for the mongo container`);
  }
  return value;
}

function ensureUser(user, pwd, roles) {
  if (appDb.getUser(user)) {
    appDb.updateUser(user, { pwd: pwd, roles: roles });
  } else {
    appDb.createUser({ user: user, pwd: pwd, roles: roles });
  }
}

for (const [user, grant] of Object.entries(access.users)) {
  const privileges = Object.entries(grant.privileges).map(([collection, actions]) => ({
    resource: { db: access.db, collection: collection },
    actions: actions,
  }));
  if (appDb.getRole(user)) {
    appDb.updateRole(user, { privileges: privileges, roles: [] });
  } else {
    appDb.createRole({ role: user, privileges: privileges, roles: [] });
  }
  ensureUser(user, password(grant.password_env), [{ role: user, db: access.db }]);
  print(`user ${user}: ${Object.keys(grant.privileges).length} collection(s) of ${access.db}`);
}

// The metrics exporter's login (docker-compose.yml: mongo-exporter): the
// built-in clusterMonitor role, which reads server statistics and replication
// state but no document. Created before the operator, whom the healthcheck
// logs in as, so that it exists once mongo reports healthy.
const exporterUser = process.env.LAPOR_MONGO_EXPORTER_USER;
if (exporterUser) {
  const adminDb = db.getSiblingDB("admin");
  const exporter = {
    pwd: password("LAPOR_MONGO_EXPORTER_PASSWORD"),
    roles: [{ role: "clusterMonitor", db: "admin" }],
  };
  if (adminDb.getUser(exporterUser)) {
    adminDb.updateUser(exporterUser, exporter);
  } else {
    adminDb.createUser({ user: exporterUser, ...exporter });
  }
  print(`user ${exporterUser}: clusterMonitor`);
}

ensureUser(access.operator, password(access.operator_password_env), [
  { role: "readWrite", db: access.db },
  { role: "dbAdmin", db: access.db },
]);
print(`user ${access.operator}: readWrite and dbAdmin on ${access.db}`);
