package legacy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/shared/ids"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// Every job status maps to one of the five legacy states, and so does a status this layer has
// never heard of.
func TestJobStateOf(t *testing.T) {
	want := map[jobs.Status]State{
		jobs.StatusQueued: JobCreated, jobs.StatusPending: JobCreated, jobs.StatusRunning: JobRunning,
		jobs.StatusSucceeded: JobSucceed, jobs.StatusFailed: JobFailed, jobs.StatusLost: JobFailed,
		jobs.StatusCancelled: JobStopped, "retrying": JobRunning, "": JobRunning,
	}
	for _, s := range jobs.Statuses {
		if _, ok := want[s]; !ok {
			t.Errorf("status %s has no expectation here: add it", s)
		}
	}
	for s, w := range want {
		if got := JobStateOf(s); got != w {
			t.Errorf("JobStateOf(%q) = %s, want %s", s, got, w)
		}
		if !slices.Contains(States, JobStateOf(s)) {
			t.Errorf("JobStateOf(%q) = %s: not a legacy state", s, JobStateOf(s))
		}
	}
}

// Steps: their own end wins; in a cancelled job the rest is stopped; in another ended job a
// step whose end was not seen failed; a step that never ran in a failed job stays created.
func TestStepStateOf(t *testing.T) {
	for name, c := range map[string]struct {
		job  jobs.Status
		step jobs.StepStatus
		want StepState
	}{
		"waiting in running job":     {jobs.StatusRunning, jobs.StepWaiting, StepCreated},
		"running":                    {jobs.StatusRunning, jobs.StepRunning, StepRunning},
		"succeeded":                  {jobs.StatusSucceeded, jobs.StepSucceeded, StepSucceed},
		"failed":                     {jobs.StatusFailed, jobs.StepFailed, StepFailed},
		"killed by cancel":           {jobs.StatusCancelled, jobs.StepCancelled, StepStopped},
		"running in cancelled job":   {jobs.StatusCancelled, jobs.StepRunning, StepStopped},
		"waiting in cancelled job":   {jobs.StatusCancelled, jobs.StepWaiting, StepStopped},
		"unknown in cancelled job":   {jobs.StatusCancelled, jobs.StepUnknown, StepStopped},
		"succeeded in cancelled job": {jobs.StatusCancelled, jobs.StepSucceeded, StepSucceed},
		"never ran in failed job":    {jobs.StatusFailed, jobs.StepWaiting, StepCreated},
		"unknown in lost job":        {jobs.StatusLost, jobs.StepUnknown, StepFailed},
		"running in failed job":      {jobs.StatusFailed, jobs.StepRunning, StepFailed},
		"unheard-of step status":     {jobs.StatusRunning, "paused", StepFailed},
	} {
		t.Run(name, func(t *testing.T) {
			if got := StepStateOf(c.job, c.step); got != c.want {
				t.Errorf("StepStateOf(%s, %s) = %s, want %s", c.job, c.step, got, c.want)
			}
		})
	}
}

// Times are never absent, null or shorter than 19 characters (omni-manager slices [:19]).
func TestTime(t *testing.T) {
	at := func(s string) *time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return &tm
	}
	zero := time.Time{}
	for name, c := range map[string]struct {
		in   *time.Time
		want string
	}{
		"nil":              {nil, "0001-01-01T00:00:00Z"},
		"zero":             {&zero, "0001-01-01T00:00:00Z"},
		"whole second":     {at("2026-11-27T19:00:00Z"), "2026-11-27T19:00:00Z"},
		"fraction":         {at("2026-11-27T19:00:00.25Z"), "2026-11-27T19:00:00.25Z"},
		"offset made UTC":  {at("2026-11-28T03:00:00+08:00"), "2026-11-27T19:00:00Z"},
		"early year":       {at("0099-01-02T03:04:05Z"), "0099-01-02T03:04:05Z"},
		"nanosecond":       {at("2026-11-27T19:00:00.000000001Z"), "2026-11-27T19:00:00.000000001Z"},
		"midnight new day": {at("2026-01-01T00:00:00Z"), "2026-01-01T00:00:00Z"},
	} {
		t.Run(name, func(t *testing.T) {
			got := Time(c.in)
			if got != c.want {
				t.Errorf("Time = %q, want %q", got, c.want)
			}
			if len(got) < 19 {
				t.Errorf("Time = %q: shorter than 19 characters", got)
			}
		})
	}
}

// The legacy shape of a job: every time set, steps numbered from 1, userID from the
// parameters, detail and version from message and revision.
func TestFromJob(t *testing.T) {
	start := time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC)
	end := start.Add(time.Minute)
	j := &jobs.Job{
		ID: ids.New(start), Service: "omni", Task: TaskRelease, Domain: "d", Arch: "aarch64",
		Status: jobs.StatusCancelled, Message: "cancelled on request", Revision: 7,
		Parameters: map[string]any{"userID": "u-1"},
		StartedAt:  &start, FinishedAt: &end,
		Steps: []jobs.Step{
			{Name: "prepare-repos", Status: jobs.StepSucceeded, StartedAt: &start, FinishedAt: &start},
			{Name: "build-image", Status: jobs.StepCancelled, StartedAt: &start, FinishedAt: &end, Message: "killed"},
			{Name: "upload", Status: jobs.StepWaiting, Reason: jobs.StepReasonNotStarted},
		},
	}
	got := FromJob(j, map[string]any{"version": "v"})
	want := &Job{
		Service: "omni", Task: TaskRelease, Domain: "d", ID: j.ID, UserID: "u-1",
		Spec: map[string]any{"version": "v"}, Engine: "kubernetes",
		StartTime: "2026-11-27T19:00:00Z", EndTime: "2026-11-27T19:01:00Z", State: JobStopped,
		Steps: []Step{
			{ID: 1, Name: "prepare-repos", State: StepSucceed, StartTime: "2026-11-27T19:00:00Z", EndTime: "2026-11-27T19:00:00Z"},
			{ID: 2, Name: "build-image", State: StepStopped, StartTime: "2026-11-27T19:00:00Z", EndTime: "2026-11-27T19:01:00Z", Message: "killed"},
			{ID: 3, Name: "upload", State: StepStopped, StartTime: ZeroTime, EndTime: ZeroTime},
		},
		Detail: "cancelled on request", Version: 7,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FromJob (-want +got):\n%s", diff)
	}
}

func testReleases(t *testing.T) *Releases {
	t.Helper()
	rs, err := ParseReleases(DefaultReleases())
	if err != nil {
		t.Fatalf("built-in releases: %v", err)
	}
	return rs
}

// A create's field names match ignoring case, at the top and inside the spec; duplicates of
// packages go; the architecture and format take their new names; repositories come from the
// release; userID reaches the parameters.
func TestToV1(t *testing.T) {
	rs := testReleases(t)
	const sum = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	for name, c := range map[string]struct {
		body string
		want V1Request
	}{
		"release": {
			body: `{"service":"omni","task":"buildimagefromrelease","domain":"d","userID":"42","engine":"kubernetes",
				"spec":{"version":"openEuler-22.03-LTS","packages":["bash","kernel","bash"],"format":"installer-iso","architecture":"x86"}}`,
			want: V1Request{Service: "omni", Task: TaskRelease, Domain: "d", Arch: "x86_64", Parameters: map[string]any{
				"product": "openEuler", "version": "22.03-LTS", "packages": []any{"bash", "kernel"}, "format": "calamares-iso",
				"repos": []any{
					"https://repo.openeuler.org/openEuler-22.03-LTS/OS/$basearch/",
					"https://repo.openeuler.org/openEuler-22.03-LTS/everything/$basearch/",
					"https://repo.openeuler.org/openEuler-22.03-LTS/update/$basearch/",
				},
				"userID": "42",
			}},
		},
		"field names in any case": {
			body: `{"SERVICE":"omni","Task":"buildimagefromrelease","DoMain":"d","userid":"42","Engine":"kubernetes",
				"Spec":{"VERSION":"openeuler-24.03-lts","Packages":["vim"],"ARCHITECTURE":"AARCH64"}}`,
			want: V1Request{Service: "omni", Task: TaskRelease, Domain: "d", Arch: "aarch64", Parameters: map[string]any{
				"product": "openEuler", "version": "24.03-LTS", "packages": []any{"vim"},
				"repos": []any{
					"https://repo.openeuler.org/openEuler-24.03-LTS/OS/$basearch/",
					"https://repo.openeuler.org/openEuler-24.03-LTS/everything/$basearch/",
					"https://repo.openeuler.org/openEuler-24.03-LTS/update/$basearch/",
				},
				"userID": "42",
			}},
		},
		"iso": {
			body: `{"service":"omni","task":"buildimagefromiso","domain":"d","userID":"7","engine":"kubernetes",
				"spec":{"kickStart":{"content":"lang en_US\n","name":"ks.cfg"},"image":{"url":"https://e.org/a.iso","checksum":"` + sum + `","name":"a.iso","architecture":"x86_64"}}}`,
			want: V1Request{Service: "omni", Task: TaskISO, Domain: "d", Arch: "x86_64", Parameters: map[string]any{
				"isoUrl": "https://e.org/a.iso", "isoSha256": sum, "kickstart": "lang en_US\n", "userID": "7",
			}},
		},
		"iso with capitalised keys, as the predecessor's own structs named them": {
			body: `{"service":"omni","task":"buildimagefromiso","domain":"d","userID":"7","engine":"kubernetes",
				"spec":{"KickStart":{"Content":"x"},"Image":{"URL":"http://e.org/a.iso","CheckSum":"` + sum + `","Architecture":"aarch64"}}}`,
			want: V1Request{Service: "omni", Task: TaskISO, Domain: "d", Arch: "aarch64", Parameters: map[string]any{
				"isoUrl": "http://e.org/a.iso", "isoSha256": sum, "kickstart": "x", "userID": "7",
			}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			var req CreateRequest
			if err := decodeCase([]byte(c.body), &req, "body"); err != nil {
				t.Fatal(err)
			}
			got, err := ToV1(req, rs)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("ToV1 (-want +got):\n%s", diff)
			}
		})
	}
}

// Bad creates answer 400 naming what is wrong.
func TestToV1Refuses(t *testing.T) {
	rs := testReleases(t)
	base := func(task, spec string) string {
		return `{"service":"omni","task":"` + task + `","domain":"d","userID":"1","engine":"kubernetes","spec":` + spec + `}`
	}
	rel := func(spec string) string { return base(TaskRelease, spec) }
	for name, c := range map[string]struct {
		body, want string
	}{
		"no service":          {`{"task":"buildimagefromrelease","domain":"d","userID":"1","engine":"kubernetes","spec":{}}`, "invalid service: required"},
		"no userID":           {`{"service":"s","task":"buildimagefromrelease","domain":"d","engine":"kubernetes","spec":{}}`, "invalid userID: required"},
		"no spec":             {`{"service":"s","task":"buildimagefromrelease","domain":"d","userID":"1","engine":"kubernetes"}`, "invalid spec: required"},
		"other engine":        {`{"service":"s","task":"buildimagefromrelease","domain":"d","userID":"1","engine":"cadence","spec":{}}`, "unrecognized job kind"},
		"other task":          {base("buildrpm", `{}`), "unrecognized job kind"},
		"unknown version":     {rel(`{"version":"openEuler-9.9","packages":["a"],"architecture":"x86"}`), `invalid spec.version: unknown version "openEuler-9.9"`},
		"no version":          {rel(`{"packages":["a"],"architecture":"x86"}`), "invalid spec.version: required"},
		"unknown arch":        {rel(`{"version":"openEuler-22.03-LTS","packages":["a"],"architecture":"riscv64"}`), `invalid spec.architecture: unknown architecture "riscv64"`},
		"no packages":         {rel(`{"version":"openEuler-22.03-LTS","architecture":"x86"}`), "invalid spec.packages"},
		"spec not an object":  {rel(`"x"`), "invalid spec"},
		"iso without image":   {base(TaskISO, `{"kickStart":{"content":"x"}}`), "invalid spec.image: required"},
		"iso upper checksum":  {base(TaskISO, `{"kickStart":{"content":"x"},"image":{"url":"https://e/a","checksum":"`+strings.Repeat("A", 64)+`","architecture":"x86"}}`), "invalid spec.image.checksum"},
		"iso ftp url":         {base(TaskISO, `{"kickStart":{"content":"x"},"image":{"url":"ftp://e/a","checksum":"`+strings.Repeat("a", 64)+`","architecture":"x86"}}`), "invalid spec.image.url"},
		"iso empty kickstart": {base(TaskISO, `{"kickStart":{"content":""},"image":{"url":"https://e/a","checksum":"`+strings.Repeat("a", 64)+`","architecture":"x86"}}`), "invalid spec.kickStart.content"},
	} {
		t.Run(name, func(t *testing.T) {
			var req CreateRequest
			err := decodeCase([]byte(c.body), &req, "body")
			if err == nil {
				_, err = ToV1(req, rs)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
			rec := httptest.NewRecorder()
			writeError(rec, httptest.NewRequest(http.MethodPost, "/", nil), err)
			if rec.Code != http.StatusBadRequest {
				t.Errorf("status %d, want 400", rec.Code)
			}
			var body map[string]string
			if json.Unmarshal(rec.Body.Bytes(), &body) != nil || !strings.Contains(body["error"], c.want) {
				t.Errorf("body %s, want {\"error\": …%s…}", rec.Body, c.want)
			}
		})
	}
}

// The releases file: the built-in one loads, and broken ones are refused with the reason.
func TestParseReleases(t *testing.T) {
	rs := testReleases(t)
	for _, v := range []string{"openEuler-22.03-LTS", "openEuler-24.03-LTS"} {
		if _, _, ok := rs.Lookup(v); !ok {
			t.Errorf("built-in releases lack %s", v)
		}
	}
	if got := rs.NameOf("openEuler", "24.03-LTS"); got != "openEuler-24.03-LTS" {
		t.Errorf("NameOf = %s", got)
	}
	for name, c := range map[string]struct{ file, want string }{
		"empty":        {`releases: {}`, "no release"},
		"no repo":      {"releases:\n  a:\n    product: p\n    version: v\n", "no repository"},
		"bad repo":     {"releases:\n  a:\n    product: p\n    version: v\n    repos: [file:///x]\n", "want an http(s) URL"},
		"bad product":  {"releases:\n  a:\n    product: 'a b'\n    version: v\n    repos: [http://r/]\n", "product"},
		"case clash":   {"releases:\n  a:\n    product: p\n    version: v\n    repos: [http://r/]\n  A:\n    product: p\n    version: v\n    repos: [http://r/]\n", "but for case"},
		"unknown key":  {"releases:\n  a:\n    product: p\n    version: v\n    repos: [http://r/]\n    mirror: x\n", "unknown field"},
		"not releases": {"versions: {}", "unknown field"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseReleases([]byte(c.file)); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}

// fakeV1 is a /v1 API of jobs held in memory, recording the batchGet calls: the legacy layer's
// upstream, an HTTP API of this project.
type fakeV1 struct {
	mu      sync.Mutex
	jobs    map[string]*jobs.Job
	batches [][]string
	auth    []string
}

func (f *fakeV1) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/jobs:batchGet":
		var req struct {
			IDs []string `json:"ids"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.IDs) == 0 || len(req.IDs) > 500 {
			http.Error(w, "bad batch", http.StatusBadRequest)
			return
		}
		f.batches = append(f.batches, req.IDs)
		resp := struct {
			Jobs    []*jobs.Job `json:"jobs"`
			Missing []string    `json:"missing"`
		}{Jobs: []*jobs.Job{}, Missing: []string{}}
		for _, id := range req.IDs {
			if j, ok := f.jobs[id]; ok {
				resp.Jobs = append(resp.Jobs, j)
			} else {
				resp.Missing = append(resp.Missing, id)
			}
		}
		_ = json.NewEncoder(w).Encode(resp)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/jobs/"):
		j, ok := f.jobs[strings.TrimPrefix(r.URL.Path, "/v1/jobs/")]
		if !ok {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"title":"Not Found","status":404,"detail":"job: not found"}`)
			return
		}
		_ = json.NewEncoder(w).Encode(j)
	default:
		http.NotFound(w, r)
	}
}

func newTestHandler(t *testing.T, f *fakeV1) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(f)
	t.Cleanup(up.Close)
	rs := testReleases(t)
	h, err := New(Settings{Prefix: "/legacy", SubmitURL: up.URL, QueryURL: up.URL, Timeout: time.Minute},
		Deps{Releases: func() *Releases { return rs }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// A batchQuery of many ids, sent without a Content-Type, is answered from bounded /v1 batchGets,
// in the order asked, without duplicates, ids that cannot be jobs, or jobs of another task.
func TestBatchChunks(t *testing.T) {
	f := &fakeV1{jobs: map[string]*jobs.Job{}}
	var asked []string
	t0 := time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC)
	for i := range 250 {
		id := ids.New(t0.Add(time.Duration(i) * time.Millisecond))
		asked = append(asked, id)
		task := TaskRelease
		if i%50 == 7 {
			task = TaskISO // another task: left out
		}
		if i%10 != 3 { // every tenth does not exist: left out
			f.jobs[id] = &jobs.Job{ID: id, Service: "omni", Task: task, Domain: "d", Status: jobs.StatusRunning,
				Parameters: map[string]any{"product": "openEuler", "version": "22.03-LTS", "packages": []any{"a"}}}
		}
	}
	body, _ := json.Marshal(map[string]any{"service": "omni", "task": TaskRelease, "domain": "d",
		"IDs": append(append(slices.Clone(asked), asked[:5]...), "not-an-id", "0b8f1c9e-4a52-4f3a-9b1e-2c3d4e5f6a7b")})
	srv := newTestHandler(t, f)
	for _, path := range []string{"/legacy/v1/jobs/batchQuery", "/legacy/v1/jobs/batchQuery/"} {
		f.batches = nil
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(string(body)))
		req.SetBasicAuth("omni", "pw")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got []Job
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, err)
		}
		var want []string
		for i, id := range asked {
			if i%10 != 3 && i%50 != 7 {
				want = append(want, id)
			}
		}
		var gotIDs []string
		for _, j := range got {
			gotIDs = append(gotIDs, j.ID)
			if j.State != JobRunning || j.Spec["version"] != "openEuler-22.03-LTS" {
				t.Errorf("job %s: state %s spec %v", j.ID, j.State, j.Spec)
			}
		}
		if diff := cmp.Diff(want, gotIDs); diff != "" {
			t.Errorf("%s: ids (-want +got):\n%s", path, diff)
		}
		var sizes []int
		for _, b := range f.batches {
			sizes = append(sizes, len(b))
		}
		if diff := cmp.Diff([]int{BatchChunk, BatchChunk, 250 - 2*BatchChunk}, sizes); diff != "" {
			t.Errorf("%s: batchGet sizes (-want +got):\n%s", path, diff)
		}
	}
	for _, a := range f.auth {
		if a == "" {
			t.Fatal("a /v1 call without the caller's credentials")
		}
	}
}

// Get: unknown, malformed or another task's id is 500 {"error":"job not found"}; a missing
// parameter is 400.
func TestGetErrors(t *testing.T) {
	id := ids.New(time.Now())
	f := &fakeV1{jobs: map[string]*jobs.Job{id: {ID: id, Service: "omni", Task: TaskISO, Domain: "d", Status: jobs.StatusPending}}}
	srv := newTestHandler(t, f)
	for name, c := range map[string]struct {
		query string
		code  int
		body  string
	}{
		"found":        {"service=omni&task=buildimagefromiso&domain=d&ID=" + id, 200, `"state":"JobCreated"`},
		"lowercase id": {"service=omni&task=buildimagefromiso&domain=d&id=" + id, 200, `"state":"JobCreated"`},
		"unknown":      {"service=omni&task=buildimagefromiso&domain=d&ID=" + ids.New(time.Now().Add(time.Hour)), 500, `{"error":"job not found"}`},
		"uuid":         {"service=omni&task=buildimagefromiso&domain=d&ID=0b8f1c9e-4a52-4f3a-9b1e-2c3d4e5f6a7b", 500, `{"error":"job not found"}`},
		"other task":   {"service=omni&task=buildimagefromrelease&domain=d&ID=" + id, 500, `{"error":"job not found"}`},
		"other domain": {"service=omni&task=buildimagefromiso&domain=e&ID=" + id, 500, `{"error":"job not found"}`},
		"no ID":        {"service=omni&task=buildimagefromiso&domain=d", 400, `{"error":"invalid ID: required"}`},
		"no domain":    {"service=omni&task=buildimagefromiso&ID=" + id, 400, `{"error":"invalid domain: required"}`},
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + "/legacy/v1/jobs?" + c.query)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.code || !strings.Contains(string(b), c.body) {
				t.Errorf("got %d %s, want %d with %s", resp.StatusCode, b, c.code, c.body)
			}
		})
	}
}

// maxRecord is clamped, never refused.
func TestLogsMaxRecordClamped(t *testing.T) {
	id := ids.New(time.Now())
	f := &fakeV1{jobs: map[string]*jobs.Job{id: {ID: id, Service: "omni", Task: TaskISO, Domain: "d", Status: jobs.StatusRunning,
		Steps: []jobs.Step{{Name: "download-iso", Status: jobs.StepRunning}}}}}
	var limits []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/logs") {
			limits = append(limits, r.URL.Query().Get("limit"))
			_, _ = io.WriteString(w, `{"lines":[{"n":1,"text":"hello"}],"cursor":"c1","complete":false}`)
			return
		}
		f.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	h, err := New(Settings{Prefix: "/legacy", SubmitURL: up.URL, QueryURL: up.URL, Timeout: time.Minute},
		Deps{Releases: func() *Releases { return testReleases(t) }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Routes(mux)
	for _, max := range []string{"999999999", "0", "-3", "50", ""} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/legacy/v1/jobs/logs?service=omni&task=buildimagefromiso&domain=d&ID="+id+"&stepID=1&maxRecord="+max, nil))
		if rec.Code != 200 || rec.Body.String() != "hello\n" || rec.Header().Get("logTimeUUID") != "c1" || rec.Header().Get("logCompleted") != "false" {
			t.Errorf("maxRecord=%s: %d %q %v", max, rec.Code, rec.Body, rec.Header())
		}
	}
	if diff := cmp.Diff([]string{strconv.Itoa(MaxRecord), "1", "1", "50", "1000"}, limits); diff != "" {
		t.Errorf("/v1 limits (-want +got):\n%s", diff)
	}
}
