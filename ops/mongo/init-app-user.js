// Creates the least-privilege application user for the Lapor services.
//
// The official mongo image runs /docker-entrypoint-initdb.d/* once, as the root
// user, on the first start with an empty data volume, before the server
// accepts outside connections. Changing LAPOR_DB_USER / LAPOR_DB_PASSWORD
// later does not re-run this: update the user with mongosh, or start from an
// empty volume. (The mongo healthcheck logs in as this user, so a mismatch
// shows up as an unhealthy mongo instead of failing services.)

const user = process.env.LAPOR_DB_USER;
const password = process.env.LAPOR_DB_PASSWORD;
if (!user || !password) {
  throw new Error("LAPOR_DB_USER and LAPOR_DB_PASSWORD must be set for the mongo container");
}

// Must match MONGO_DB and the authSource in MONGO_URL of the services.
const appDbName = "lapor";

// The user is defined in the application database itself, so it can neither
// see nor touch any other database (no admin, no cluster roles).
db.getSiblingDB(appDbName).createUser({
  user: user,
  pwd: password,
  roles: [{ role: "readWrite", db: appDbName }],
});

print(`created user ${user} with readWrite on ${appDbName}`);
