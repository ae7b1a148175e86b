// Initiates the MongoDB replica set of docker-compose.scale.yml: the base
// file's `mongo` (which holds the root and application users) and the empty
// mongo-2 and mongo-3, which copy everything from it once they are members.
//
// Run by the `mongo-init` service with mongosh, connected as root directly to
// `mongo`. Safe to run again: a set that is initiated already is left as it is
// (members changed later are the operator's job, `rs.reconfig`). Exits
// non-zero when no primary appears in time, so the service is retried.

const replSetName = "lapor-rs";
const members = ["mongo:27017", "mongo-2:27017", "mongo-3:27017"];

function initiated() {
  try {
    rs.status();
    return true;
  } catch (error) {
    // 94 NotYetInitialized: a fresh member that has never been part of a set.
    if (error.code === 94 || error.codeName === "NotYetInitialized") {
      return false;
    }
    throw error;
  }
}

if (initiated()) {
  print(`replica set ${replSetName} is initiated already`);
} else {
  const result = rs.initiate({
    _id: replSetName,
    members: members.map((host, index) => ({ _id: index, host: host })),
  });
  // 23 AlreadyInitialized: another run got there first.
  if (result.ok !== 1 && result.code !== 23) {
    throw new Error(`rs.initiate failed: ${JSON.stringify(result)}`);
  }
  print(`replica set ${replSetName} initiated with ${members.join(", ")}`);
}

// Wait until the set has elected a primary (a few seconds after initiating).
const deadline = Date.now() + 120 * 1000;
for (;;) {
  const hello = db.adminCommand({ hello: 1 });
  if (hello.primary) {
    print(`primary: ${hello.primary}`);
    break;
  }
  if (Date.now() > deadline) {
    throw new Error("no primary elected within 120 s");
  }
  sleep(1000);
}
