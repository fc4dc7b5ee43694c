// Package migrations embeds the schema migrations of both stores, in golang-migrate's naming
// (NNNN_name.up.ext / NNNN_name.down.ext), for use with golang-migrate's iofs source:
//
//	src, err := iofs.New(migrations.SQLite, ".")
//
// Cassandra migrations run with the cassandra driver in multi-statement mode, which splits a
// file on every ';' without understanding CQL: no ';' may appear inside a comment or a string,
// and no comment may follow the last statement of a file.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed cassandra/*.cql
var cassandraFiles embed.FS

//go:embed sqlite/*.sql
var sqliteFiles embed.FS

// Cassandra holds the CQL migrations (keyspace-relative; the keyspace itself is created by
// `omni db init`, since golang-migrate cannot create it).
var Cassandra fs.FS = mustSub(cassandraFiles, "cassandra")

// SQLite holds the SQL migrations of the embedded single-machine store.
var SQLite fs.FS = mustSub(sqliteFiles, "sqlite")

func mustSub(f embed.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // dir is a constant that exists at build time
	}
	return sub
}
