package cassandra

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// configYAML is the cassandra.yaml of a throwaway single node on loopback. The request timeouts
// are longer than Cassandra's defaults (2 s for writes, 1 s for contended transactions) so that
// a loaded two-core machine does not turn slowness into failures; the store's handling of a
// timed-out transaction is tested by its own tests, not by chance.
func configYAML(dir string, nativePort, storagePort, sslStoragePort int) string {
	p := func(name string) string { return filepath.Join(dir, name) }
	return fmt.Sprintf(`# Written by local/cassandra for one test or local run; see that package.
cluster_name: omni-local
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:%[2]d"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: %[2]d
ssl_storage_port: %[3]d
start_native_transport: true
native_transport_port: %[1]d
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
role_manager: CassandraRoleManager
network_authorizer: AllowAllNetworkAuthorizer
data_file_directories:
  - %[4]s
commitlog_directory: %[5]s
saved_caches_directory: %[6]s
hints_directory: %[7]s
cdc_raw_directory: %[8]s
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 8MiB
hinted_handoff_enabled: false
auto_snapshot: false
snapshot_before_compaction: false
incremental_backups: false
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 4
concurrent_compactors: 1
memtable_flush_writers: 1
key_cache_size: 8MiB
counter_cache_size: 0MiB
prepared_statements_cache_size: 8MiB
read_request_timeout: 10000ms
range_request_timeout: 10000ms
write_request_timeout: 10000ms
counter_write_request_timeout: 10000ms
cas_contention_timeout: 5000ms
truncate_request_timeout: 60000ms
request_timeout: 20000ms
materialized_views_enabled: false
sasi_indexes_enabled: false
user_defined_functions_enabled: false
`, nativePort, storagePort, sslStoragePort, p("data"), p("commitlog"), p("saved_caches"), p("hints"), p("cdc_raw"))
}

// logbackXML sends Cassandra's log, at INFO, to stdout, which Start appends to cassandra.log.
const logbackXML = `<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
  <logger name="org.apache.cassandra" level="INFO"/>
  <logger name="com.thinkaurelius.thrift" level="ERROR"/>
</configuration>
`

// jvm17Flags are the module exports and opens of Cassandra 5.0's conf/jvm17-server.options,
// without which it fails on Java 17, and the netty settings from the same file.
var jvm17Flags = []string{
	"-Djdk.attach.allowAttachSelf=true",
	"--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
	"--add-exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
	"--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED",
	"--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED",
	"--add-exports", "java.sql/java.sql=ALL-UNNAMED",
	"--add-exports", "java.base/java.lang.ref=ALL-UNNAMED",
	"--add-exports", "jdk.unsupported/sun.misc=ALL-UNNAMED",
	"--add-exports", "jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
	"--add-exports", "jdk.attach/sun.tools.attach=ALL-UNNAMED",
	"--add-opens", "java.base/java.lang.module=ALL-UNNAMED",
	"--add-opens", "java.base/jdk.internal.loader=ALL-UNNAMED",
	"--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED",
	"--add-opens", "java.base/jdk.internal.reflect=ALL-UNNAMED",
	"--add-opens", "java.base/jdk.internal.math=ALL-UNNAMED",
	"--add-opens", "java.base/jdk.internal.module=ALL-UNNAMED",
	"--add-opens", "java.base/jdk.internal.util.jar=ALL-UNNAMED",
	"--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
	"--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
	"--add-opens", "java.base/java.io=ALL-UNNAMED",
	"--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED",
	"--add-opens", "jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
	"--add-opens", "java.base/java.lang=ALL-UNNAMED",
	"--add-opens", "java.base/java.util=ALL-UNNAMED",
	"-Dio.netty.tryReflectionSetAccessible=true",
	"-Dio.netty.allocator.useCacheForAllThreads=true",
	"-Dio.netty.allocator.maxOrder=11",
}

// testStartFlags make a single throwaway node start fast and light. JMX stays off: neither
// cassandra.jmx.local.port nor cassandra.jmx.remote.port is set.
var testStartFlags = []string{
	"-Dcassandra-foreground=yes",
	// Nothing to gossip with: one node.
	"-Dcassandra.skip_wait_for_gossip_to_settle=0",
	"-Dcassandra.ring_delay_ms=100",
	"-Dcassandra.load_ring_state=false",
	"-Dcassandra.superuser_setup_delay_ms=0",
	// The data is thrown away: no fsync of the system tables or of anything else.
	"-Dcassandra.unsafesystem=true",
	"-Dcassandra.skip_sync=true",
	"-Djava.net.preferIPv4Stack=true",
}

// jvmArgs is the java command line of a node whose work folder is dir.
func jvmArgs(dir, lib, heap, yaml, logback string) ([]string, error) {
	jars, err := filepath.Glob(filepath.Join(lib, "*.jar"))
	if err != nil || len(jars) == 0 {
		return nil, fmt.Errorf("no jars in %s", lib)
	}
	args := []string{
		"-Xms256m", "-Xmx" + heap, "-Xss256k",
		"-XX:+UseG1GC", "-XX:+ParallelRefProcEnabled", "-XX:MaxTenuringThreshold=1",
		"-XX:+PerfDisableSharedMem", "-XX:+ExitOnOutOfMemoryError",
	}
	args = append(args, jvm17Flags...)
	args = append(args, testStartFlags...)
	// jamm measures object sizes for the memtables; as an agent it is exact and fast.
	if jamm, _ := filepath.Glob(filepath.Join(lib, "jamm-*.jar")); len(jamm) == 1 {
		args = append(args, "-javaagent:"+jamm[0])
	}
	args = append(args,
		"-Dcassandra.config=file://"+yaml,
		"-Dcassandra.storagedir="+dir,
		"-Dcassandra.logdir="+filepath.Join(dir, "logs"),
		"-Dcassandra.triggers_dir="+filepath.Join(dir, "triggers"),
		"-Dlogback.configurationFile=file://"+logback,
		"-cp", strings.Join(jars, string(os.PathListSeparator)),
		"org.apache.cassandra.service.CassandraDaemon",
	)
	return args, nil
}
