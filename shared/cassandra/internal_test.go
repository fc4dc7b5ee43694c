package cassandra

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// These tests need no Cassandra: they check the parts of the store that can be checked alone.

func TestConfigDefaults(t *testing.T) {
	got, err := Config{Hosts: []string{"db:9042"}}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if got.Keyspace != "omni" || got.consistency != gocql.LocalQuorum || got.serial != gocql.LocalSerial || got.Timeout != 10*time.Second {
		t.Errorf("defaults = %+v", got)
	}
	got, err = Config{Hosts: []string{"db"}, Consistency: "quorum", SerialConsistency: "serial"}.resolve()
	if err != nil || got.consistency != gocql.Quorum || got.serial != gocql.Serial {
		t.Errorf("lower-case levels = %+v, %v", got, err)
	}
	for name, c := range map[string]Config{
		"no hosts":          {},
		"empty host":        {Hosts: []string{""}},
		"bad keyspace":      {Hosts: []string{"db"}, Keyspace: "omni; DROP"},
		"keyspace digit":    {Hosts: []string{"db"}, Keyspace: "1omni"},
		"keyspace too long": {Hosts: []string{"db"}, Keyspace: "k" + strings.Repeat("x", 48)},
		"bad consistency":   {Hosts: []string{"db"}, Consistency: "most"},
		"any consistency":   {Hosts: []string{"db"}, Consistency: "ANY"},
		"bad serial":        {Hosts: []string{"db"}, SerialConsistency: "QUORUM"},
	} {
		if _, err := c.resolve(); err == nil {
			t.Errorf("%s: resolve accepted %+v", name, c)
		}
	}
}

func TestParseURL(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    Config
		wantErr bool
	}{
		"one host":   {in: "cassandra://db/omni", want: Config{Hosts: []string{"db"}, Keyspace: "omni"}},
		"many hosts": {in: "cassandra://a:9042,b:9043/ks", want: Config{Hosts: []string{"a:9042", "b:9043"}, Keyspace: "ks"}},
		"options": {
			in:   "cassandra://db/ks?consistency=quorum&serial_consistency=SERIAL&local_dc=eu&timeout=3s",
			want: Config{Hosts: []string{"db"}, Keyspace: "ks", Consistency: "quorum", SerialConsistency: "SERIAL", LocalDC: "eu", Timeout: 3 * time.Second},
		},
		"token aware":     {in: "cassandra://db/ks?token_aware=true", want: Config{Hosts: []string{"db"}, Keyspace: "ks", TokenAware: true}},
		"bad token aware": {in: "cassandra://db/ks?token_aware=maybe", wantErr: true},
		"no keyspace":     {in: "cassandra://db", want: Config{Hosts: []string{"db"}}},
		"wrong scheme":    {in: "sqlite:omni.db", wantErr: true},
		"no host":         {in: "cassandra:///ks", wantErr: true},
		"bad timeout":     {in: "cassandra://db/ks?timeout=soon", wantErr: true},
		"bad consistency": {in: "cassandra://db/ks?consistency=most", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseURL(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseURL(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if err == nil && fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("ParseURL(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

// TestBindMarkers checks that each statement binds as many values as it has markers.
func TestBindMarkers(t *testing.T) {
	r, err := encodeJob(&jobs.Job{ID: "a", Service: "s", Task: "t", Status: jobs.StatusPending, CreatedAt: time.Now(), UpdatedAt: time.Now(), Revision: 1})
	if err != nil {
		t.Fatal(err)
	}
	cols := len(strings.Split(jobColumns, ","))
	for name, tc := range map[string]struct {
		stmt string
		args int
	}{
		"insert": {insertJob, len(r.args())},
		"update": {updateJob, len(r.args()[1:]) + 2},
		"select": {selectJob, 1},
	} {
		if n := strings.Count(tc.stmt, "?"); n != tc.args {
			t.Errorf("%s has %d markers for %d values", name, n, tc.args)
		}
	}
	if len(r.args()) != cols {
		t.Errorf("row has %d values for %d columns", len(r.args()), cols)
	}
}

func TestCursorRoundTrip(t *testing.T) {
	for _, c := range []listCursor{{Day: 20000}, {Day: 20000, T: 1_700_000_000_123, ID: "job-ü"}} {
		got, err := decodeListCursor(encodeListCursor(c))
		if err != nil || got != c {
			t.Errorf("round trip of %+v = %+v, %v", c, got, err)
		}
	}
	if _, err := decodeListCursor("%%%"); !jobs.IsInvalid(err) {
		t.Errorf("decode of garbage = %v, want *InvalidError", err)
	}
}

func TestBuckets(t *testing.T) {
	at := time.Date(2026, 3, 4, 23, 59, 59, 999e6, time.FixedZone("X", -5*3600)) // 5 March, 04:59 UTC
	if got, want := dayOf(at), time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("dayOf(%v) = %v, want %v", at, got, want)
	}
	if d := dayOf(at); !dayFromNumber(dayNumber(d)).Equal(d) {
		t.Errorf("day number does not round-trip for %v", d)
	}
	counts := make([]int, activeShards)
	for i := range 1600 {
		s := shardOf("job-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + time.Duration(i).String())
		if s < 0 || s >= activeShards {
			t.Fatalf("shard %d out of range", s)
		}
		counts[s]++
	}
	for s, n := range counts {
		if n == 0 {
			t.Errorf("shard %d never used: %v", s, counts)
		}
	}
	j := &jobs.Job{CreatedAt: at, Revision: 1}
	t1 := writeTime(j)
	j.Revision = 2
	if writeTime(j) <= t1 {
		t.Errorf("writeTime does not grow with the revision")
	}
}

// requestError is a server error as the driver reports it (its own types cannot be built
// outside gocql).
type requestError int

func (e requestError) Code() int       { return int(e) }
func (e requestError) Message() string { return "server said no" }
func (e requestError) Error() string   { return "server said no" }

var _ gocql.RequestError = requestError(0)

func TestWrapMarksUnavailable(t *testing.T) {
	tests := map[string]struct {
		err         error
		unavailable bool
	}{
		"no connections": {gocql.ErrNoConnections, true},
		"write timeout":  {requestError(gocql.ErrCodeWriteTimeout), true},
		"unavailable":    {requestError(gocql.ErrCodeUnavailable), true},
		"overloaded":     {requestError(gocql.ErrCodeOverloaded), true},
		"invalid query":  {requestError(gocql.ErrCodeInvalid), false},
		"net error":      {&net.OpError{Op: "dial", Err: errors.New("refused")}, true},
		"syntax":         {errors.New("line 1: no viable alternative"), false},
		"context ended":  {context.DeadlineExceeded, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := errors.Is(wrap("op", tc.err), jobs.ErrUnavailable); got != tc.unavailable {
				t.Errorf("wrap(%v) unavailable = %v, want %v", tc.err, got, tc.unavailable)
			}
			if !errors.Is(wrap("op", tc.err), tc.err) {
				t.Errorf("wrap(%v) lost the cause", tc.err)
			}
		})
	}
}

func TestOpenUnreachable(t *testing.T) {
	// A port that was just free: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = Open(t.Context(), Config{Hosts: []string{addr}, Timeout: 500 * time.Millisecond})
	if !errors.Is(err, jobs.ErrUnavailable) {
		t.Errorf("Open(%s) = %v, want ErrUnavailable", addr, err)
	}
}

func TestOpenHonoursContext(t *testing.T) {
	// A listener that accepts and never answers: the driver would wait for its own timeout.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Open(ctx, Config{Hosts: []string{l.Addr().String()}, Timeout: time.Minute})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open = %v, want the context's error", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Open took %v after its context ended", d)
	}
}
