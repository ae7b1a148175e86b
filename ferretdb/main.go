// Command lapor-ferretdb runs FerretDB v1 with its SQLite backend as an
// embedded library: the upstream binary panics at start-up when built from
// the module proxy (its version file is not part of the module).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// operatorPasswordEnv names the variable holding the password the operator is
// created with on a first start with -access.
const operatorPasswordEnv = "LAPOR_FERRETDB_OPERATOR_PASSWORD"

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("data", "./var/ferretdb", "directory for the SQLite databases")
	access := flag.String("access", "", "JSON file of the users' access to collections; "+
		"turns on authentication (the operator's first password comes from "+operatorPasswordEnv+")")
	flag.Parse()
	if *access != "" && os.Getenv(operatorPasswordEnv) == "" {
		log.Fatalf("-access needs the operator's password in %s", operatorPasswordEnv)
	}

	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		log.Fatalf("data directory: %v", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		log.Fatalf("data directory: %v", err)
	}

	db, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Handler:  "sqlite",
		// FerretDB's defaults (WAL, busy timeout) stay; the limit only truncates
		// the write-ahead log back after a checkpoint, so a bulk load does not
		// leave a WAL many times the database's size on disk.
		SQLiteURL: "file:" + dir + "/?_pragma=journal_size_limit(67108864)",
		// From the environment rather than a flag: a command line is visible to
		// every local user.
		AccessFile:       *access,
		OperatorPassword: os.Getenv(operatorPasswordEnv),
	})
	if err != nil {
		log.Fatalf("ferretdb: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Fprintf(os.Stderr, "ferretdb listening on %s, data in %s\n", *listen, dir)
	db.Run(ctx)
}
