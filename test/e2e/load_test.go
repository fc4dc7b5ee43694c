package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// Faults the storm's proxy injects, one per connection.
const (
	faultNone     = iota
	faultBefore   // the request is read, then the client's connection reset: the server never sees it
	faultDuring   // the request is forwarded, then both connections closed: the server's request context ends mid-submit
	faultAfter    // the server answered; the client's connection is reset instead of the answer
	faultAfter502 // the server answered; the client gets a 502 instead (a gateway's timeout)
	faultKinds
)

var faultNames = [faultKinds]string{"none", "reset before", "closed during", "reset after the answer", "502 after the answer"}

// faultProxy forwards one HTTP request per connection to target, injecting a fault into a
// share of the connections.
type faultProxy struct {
	ln     net.Listener
	target string
	share  float64 // of connections that get one of the faults, picked uniformly

	mu     sync.Mutex
	rnd    *rand.Rand
	unseen map[string]string // Idempotency-Key → the job id of an answer the client never got
	counts [faultKinds]int

	inFlight, maxInFlight atomic.Int64
	wg                    sync.WaitGroup
}

func newFaultProxy(t *testing.T, target string, share float64, seed uint64) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, share: share, rnd: rand.New(rand.NewPCG(seed, 13)), unseen: map[string]string{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.serve(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *faultProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *faultProxy) pick() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	kind := faultNone
	if p.rnd.Float64() < p.share {
		kind = 1 + p.rnd.IntN(faultKinds-1)
	}
	p.counts[kind]++
	return kind
}

// reset closes c with a TCP RST.
func reset(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

func (p *faultProxy) serve(c *net.TCPConn) {
	n := p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	for m := p.maxInFlight.Load(); n > m && !p.maxInFlight.CompareAndSwap(m, n); m = p.maxInFlight.Load() {
	}
	c.SetDeadline(time.Now().Add(time.Minute))
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		c.Close()
		return
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		c.Close()
		return
	}
	kind := p.pick()
	if kind == faultBefore {
		reset(c)
		return
	}
	d, err := net.Dial("tcp", p.target)
	if err != nil {
		reset(c)
		return
	}
	s := d.(*net.TCPConn)
	defer s.Close()
	s.SetDeadline(time.Now().Add(time.Minute))
	req.Body = io.NopCloser(bytes.NewReader(body))
	if err := req.Write(s); err != nil {
		reset(c)
		return
	}
	switch kind {
	case faultDuring:
		// A FIN to the server: it sees its client go away while it handles the request.
		s.Close()
		reset(c)
		return
	case faultAfter, faultAfter502:
		resp, err := http.ReadResponse(bufio.NewReader(s), req)
		if err != nil {
			reset(c)
			return
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var j jobs.Job
		if (resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK) && json.Unmarshal(answer, &j) == nil && j.ID != "" {
			p.mu.Lock()
			if _, seen := p.unseen[req.Header.Get("Idempotency-Key")]; !seen {
				p.unseen[req.Header.Get("Idempotency-Key")] = j.ID
			}
			p.mu.Unlock()
		}
		if kind == faultAfter {
			reset(c)
			return
		}
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		c.Close()
	default:
		io.Copy(c, s)
		c.Close()
	}
}

// stormResult is what one storm client ended with.
type stormResult struct {
	id       string
	attempts int
	replayed bool // its final answer was a replay (200, Idempotent-Replayed)
	err      error
}

// stormSubmit submits req with key through base until it gets an answer that is not a
// connection error, a 5xx or a 429, or ctx ends. Each attempt is a new connection.
func stormSubmit(ctx context.Context, hc *http.Client, base, key string, req map[string]any) stormResult {
	raw, err := json.Marshal(req)
	if err != nil {
		return stormResult{err: err}
	}
	var res stormResult
	var last string
	backoff := 10 * time.Millisecond
	for {
		res.attempts++
		wait := backoff
		r, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/jobs", bytes.NewReader(raw))
		if err != nil {
			return stormResult{err: err}
		}
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Idempotency-Key", key)
		r.SetBasicAuth(root.user, root.password)
		resp, err := hc.Do(r)
		if err != nil {
			last = err.Error()
		} else {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case rerr != nil:
				last = rerr.Error()
			case resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK:
				var j jobs.Job
				if err := json.Unmarshal(body, &j); err != nil || j.ID == "" {
					res.err = fmt.Errorf("answer %d without a job: %s", resp.StatusCode, body)
					return res
				}
				res.id, res.replayed = j.ID, resp.Header.Get("Idempotent-Replayed") == "true"
				if (resp.StatusCode == http.StatusOK) != res.replayed {
					res.err = fmt.Errorf("answer %d with Idempotent-Replayed %q", resp.StatusCode, resp.Header.Get("Idempotent-Replayed"))
				}
				return res
			case resp.StatusCode == http.StatusTooManyRequests:
				last = "429"
				if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
					wait = min(time.Duration(s)*time.Second, 2*time.Second)
				}
			case resp.StatusCode >= 500:
				last = fmt.Sprintf("%d %s", resp.StatusCode, body)
			default:
				res.err = fmt.Errorf("answer %d: %s", resp.StatusCode, body)
				return res
			}
		}
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			res.err = fmt.Errorf("no answer after %d attempts before the client's deadline; last: %s", res.attempts, last)
			return res
		case <-t.C:
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// TestSubmitStormWithResets: 1,000 clients submit at once (64 in flight),
// each with its own Idempotency-Key, through a proxy that breaks 30% of the connections — reset
// before the request reaches the server, closed while the server handles it, reset or answered
// 502 after the server answered (the job exists, the client does not know) — and retry on
// connection errors, 5xx and 429 with the same key. Every client ends with a job; the ids are
// distinct; a client whose answer was lost gets that very job on its retry; the service holds
// exactly one job per client (listed through the API) and each key names its client's job in
// the store. The jobs wait behind a quota of one slot, held by one running job, and each is
// cancelled once its client has its answer: nothing of theirs reaches a cluster.
func TestSubmitStormWithResets(t *testing.T) {
	const arch, clients, parallel = "x86_64", 1000, 64
	start := time.Now()
	ins := omni.Deps.Clusters.Instances(arch)
	if len(ins) == 0 {
		t.Fatalf("no %s instance", arch)
	}
	svc := fmt.Sprintf("storm-%x", time.Now().UnixNano())
	qWritePolicy(t, ins[0].Name, fmt.Sprintf(`services:
  %s: {quota: {%s: 1}}
instances:
  %s: {capacity: %d}
`, svc, arch, ins[0].Name, ins[0].Capacity))
	hold := root.submit(t, rpmJob(svc, arch, map[string]string{platform.AnnotationHoldStep: "build-rpm"}))
	if hold.Status != jobs.StatusPending && hold.Status != jobs.StatusRunning {
		t.Fatalf("the job holding the service's one slot is %s, want pending", hold.Status)
	}
	t.Cleanup(func() {
		if r := root.do(t, http.MethodDelete, "/v1/jobs/"+hold.ID, nil); r.code != http.StatusOK {
			t.Errorf("cancel the holding job: %d %s", r.code, r.body)
		}
	})

	seed := uint64(time.Now().UnixNano())
	t.Logf("fault seed %d", seed)
	target, err := url.Parse(omni.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newFaultProxy(t, target.Host, 0.3, seed)
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, ResponseHeaderTimeout: 30 * time.Second}}
	results := make([]stormResult, clients)
	keys := make([]string, clients)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range clients {
		keys[i] = fmt.Sprintf("%s-key-%04d", svc, i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			results[i] = stormSubmit(ctx, hc, proxy.url(), keys[i], rpmJob(svc, arch, map[string]string{"n": strconv.Itoa(i)}))
			if results[i].err == nil {
				// Cancelled while queued, once answered: nothing of it reaches a cluster, and
				// the queue every dispatch pass reads stays short.
				if code, err := stormDelete(hc, results[i].id); err != nil || code != http.StatusOK {
					t.Errorf("cancel %s: %d %v", results[i].id, code, err)
				}
			}
		}()
	}
	wg.Wait()
	stormTook := time.Since(start)

	// Every client has a job, each its own, and the one the server answered with even when the
	// answer was lost.
	byID := map[string]int{}
	attempts, replayed, failed := 0, 0, 0
	for i, r := range results {
		attempts += r.attempts
		if r.replayed {
			replayed++
		}
		if r.err != nil {
			failed++
			if failed <= 10 {
				t.Errorf("client %d (%s): %v", i, keys[i], r.err)
			}
			continue
		}
		if other, dup := byID[r.id]; dup {
			t.Errorf("clients %d and %d got the same job %s", other, i, r.id)
		}
		byID[r.id] = i
	}
	proxy.mu.Lock()
	counts, unseen := proxy.counts, len(proxy.unseen)
	for i, k := range keys {
		if id, ok := proxy.unseen[k]; ok && results[i].err == nil && results[i].id != id {
			t.Errorf("client %d: the server answered job %s but the client never got it; its retry got %s", i, id, results[i].id)
		}
	}
	proxy.mu.Unlock()
	t.Logf("%d clients, %d submits (%d retries) in %v, at most %d connections in flight; %d answers replayed, %d clients failed",
		clients, attempts, attempts-clients, stormTook.Round(time.Millisecond), proxy.maxInFlight.Load(), replayed, failed)
	for k := faultNone + 1; k < faultKinds; k++ {
		t.Logf("fault %q: %d", faultNames[k], counts[k])
		if counts[k] < clients/40 {
			t.Errorf("fault %q injected %d times, want at least %d (is the proxy in the way?)", faultNames[k], counts[k], clients/40)
		}
	}
	if unseen == 0 {
		t.Errorf("no answer of the server was kept from its client: the case that matters was not tried")
	}
	if n := proxy.maxInFlight.Load(); n < 16 {
		t.Errorf("at most %d connections were in flight at once, want at least 16", n)
	}

	// The store: exactly these jobs for the service (and the holding one), listed through the API.
	listed := map[string]bool{}
	token := ""
	for {
		r := root.do(t, http.MethodGet, "/v1/jobs?service="+svc+"&limit=1000&page_token="+token, nil)
		if r.code != http.StatusOK {
			t.Fatalf("list the jobs of %s: %d %s", svc, r.code, r.body)
		}
		var page struct {
			Jobs          []*jobs.Job `json:"jobs"`
			NextPageToken string      `json:"nextPageToken"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		for _, j := range page.Jobs {
			if listed[j.ID] {
				t.Errorf("job %s listed twice", j.ID)
			}
			listed[j.ID] = true
			if j.ID != hold.ID && (j.Status != jobs.StatusCancelled || j.Cluster != "") {
				t.Errorf("job %s is %s on cluster %q, want cancelled while queued behind the quota", j.ID, j.Status, j.Cluster)
			}
		}
		if page.NextPageToken == "" {
			break
		}
		token = page.NextPageToken
	}
	delete(listed, hold.ID)
	t.Logf("the store holds %d jobs of the storm for %d distinct ids answered", len(listed), len(byID))
	if len(listed) != clients || len(byID) != clients {
		t.Errorf("%d jobs stored and %d distinct ids answered, want %d of each", len(listed), len(byID), clients)
	}
	for id := range listed {
		if _, ok := byID[id]; !ok {
			t.Errorf("job %s is stored but no client got it", id)
		}
	}
	for id := range byID {
		if !listed[id] {
			t.Errorf("job %s was answered but is not stored", id)
		}
	}
	// Each key names its client's job (a key not yet claimed would be claimed by the probe id).
	ctx := context.Background()
	for i, k := range keys {
		if results[i].err != nil {
			continue
		}
		got, err := omni.Deps.Store.ClaimIdempotencyKey(ctx, svc, k, "probe", 24*time.Hour)
		if err != nil {
			t.Fatalf("read key %s: %v", k, err)
		}
		if got != results[i].id {
			t.Errorf("key %s names job %q, its client got %s", k, got, results[i].id)
		}
	}

	t.Logf("storm %v, checks %v", stormTook.Round(time.Millisecond), time.Since(start.Add(stormTook)).Round(time.Millisecond))
}

// stormDelete cancels job id directly (not through the proxy) and returns the status code.
func stormDelete(hc *http.Client, id string) (int, error) {
	r, err := http.NewRequest(http.MethodDelete, omni.URL+"/v1/jobs/"+id, nil)
	if err != nil {
		return 0, err
	}
	r.SetBasicAuth(root.user, root.password)
	resp, err := hc.Do(r)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}
