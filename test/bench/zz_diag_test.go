package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"io"
	"testing"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/ids"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/manifest"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
)

func BenchmarkZZDiag(b *testing.B) {
	m := allInOne(b)
	ctx := context.Background()
	cl, _ := m.Deps.Clusters.Get("x86_64")
	body, _ := json.Marshal(rpmJob)
	var tStore, tKube, tEmit, tPost []time.Duration
	for i := 0; i < 30; i++ {
		id := ids.New(time.Now())
		ttl := int32(3600)
		objs, _ := m.Deps.Catalogue.Current().Render("buildrpm", manifest.Input{JobID: id, Namespace: "default", Service: "bench", Task: "buildrpm", Domain: "bench", Arch: "x86_64", Parameters: rpmJob["parameters"].(map[string]any), TTLSecondsAfterFinished: &ttl})
		now := time.Now().UTC()
		j := &jobs.Job{ID: id, Service: "bench", Task: "buildrpm", Domain: "bench", Arch: "x86_64", Cluster: "x86_64", Namespace: "default", Status: jobs.StatusPending, CreatedAt: now, UpdatedAt: now}
		t := time.Now()
		if err := m.Deps.Store.CreateJob(ctx, j); err != nil { b.Fatal(err) }
		tStore = append(tStore, time.Since(t))
		t = time.Now()
		if err := cl.Create(ctx, id, objs); err != nil { b.Fatal(err) }
		tKube = append(tKube, time.Since(t))
		e, _ := events.NewJobEvent(events.TypeJobCreated, "submit", j, "")
		t = time.Now()
		if err := m.Deps.Emitter.Emit(ctx, e); err != nil { b.Fatal(err) }
		tEmit = append(tEmit, time.Since(t))
		t = time.Now()
		req, _ := http.NewRequest("POST", m.URL+"/v1/jobs", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth(m.User, m.Password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil { b.Fatal(err) }
		io.ReadAll(resp.Body); resp.Body.Close()
		tPost = append(tPost, time.Since(t))
	}
	b.Logf("store %v\nkube %v\nemit %v\npost %v", tStore, tKube, tEmit, tPost)
}
