// Command lapor-ferretdb runs FerretDB v1 with its SQLite backend as an
// embedded library: the upstream binary panics at start-up when built from
// the module proxy (its version file is not part of the module).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// operatorPasswordEnv names the variable holding the password the operator is
// created with on a first start with -access.
const operatorPasswordEnv = "LAPOR_FERRETDB_OPERATOR_PASSWORD"

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("data", "./var/ferretdb", "directory for the SQLite databases")
	// NORMAL: in WAL mode a commit is in the log before it is acknowledged, so a
	// crashed or killed process loses nothing; only a power cut may lose the last
	// commits before a checkpoint, the same trade NATS makes by syncing its file
	// store every two minutes (see BENCHMARKS.md for the measurements).
	synchronous := flag.String("sqlite-synchronous", "NORMAL", "SQLite's synchronous mode: NORMAL or FULL")
	postgresql := flag.String("postgresql", "", "PostgreSQL URL: FerretDB's PostgreSQL backend instead of SQLite")
	access := flag.String("access", "", "JSON file of the users' access to collections; "+
		"turns on authentication (the operator's first password comes from "+operatorPasswordEnv+")")
	flag.Parse()
	if *access != "" && os.Getenv(operatorPasswordEnv) == "" {
		log.Fatalf("-access needs the operator's password in %s", operatorPasswordEnv)
	}

	// The server decodes a fresh copy of every document it touches, so at Go's
	// default (100) the garbage collector took about a fifth of its CPU time;
	// at 400 it takes a quarter less CPU per complaint for about 25 MB more
	// memory (BENCHMARKS.md). The soft limit keeps the heap bounded in a bulk
	// load. GOGC and GOMEMLIMIT in the environment still decide.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(512 << 20)
	}

	if *synchronous != "NORMAL" && *synchronous != "FULL" {
		log.Fatalf("-sqlite-synchronous must be NORMAL or FULL, not %q", *synchronous)
	}

	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		log.Fatalf("data directory: %v", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		log.Fatalf("data directory: %v", err)
	}

	handler := "sqlite"
	if *postgresql != "" {
		handler = "postgresql"
	}
	db, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: *listen},
		Logger:        slog.New(deferredAttrs{handler: slog.NewTextHandler(os.Stderr, nil)}),
		Handler:       handler,
		PostgreSQLURL: *postgresql,
		// FerretDB's defaults (WAL, busy timeout) stay; the limit only truncates
		// the write-ahead log back after a checkpoint, so a bulk load does not
		// leave a WAL many times the database's size on disk.
		SQLiteURL: "file:" + dir + "/?_pragma=journal_size_limit(67108864)&_pragma=synchronous(" + *synchronous + ")",
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

// deferredAttrs is a slog handler that formats the attributes a logger is
// derived with only when a record is written. FerretDB derives a logger for
// every SQL statement, with the statement's arguments (whole documents), to log
// it at the debug level, which is off: formatting them eagerly, as slog's own
// handlers do, took about a tenth of the server's CPU time (BENCHMARKS.md).
type deferredAttrs struct {
	handler slog.Handler
	// Applied to handler in order when a record is written.
	steps []func(slog.Handler) slog.Handler
}

func (h deferredAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return h.handler.Enabled(ctx, level)
}

func (h deferredAttrs) Handle(ctx context.Context, record slog.Record) error {
	handler := h.handler
	for _, step := range h.steps {
		handler = step(handler)
	}
	return handler.Handle(ctx, record)
}

func (h deferredAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return h.then(func(inner slog.Handler) slog.Handler { return inner.WithAttrs(attrs) })
}

func (h deferredAttrs) WithGroup(name string) slog.Handler {
	return h.then(func(inner slog.Handler) slog.Handler { return inner.WithGroup(name) })
}

func (h deferredAttrs) then(step func(slog.Handler) slog.Handler) slog.Handler {
	steps := make([]func(slog.Handler) slog.Handler, len(h.steps), len(h.steps)+1)
	copy(steps, h.steps)
	return deferredAttrs{handler: h.handler, steps: append(steps, step)}
}
