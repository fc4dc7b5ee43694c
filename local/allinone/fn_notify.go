package allinone

import (
	"context"
	"os"
	"path/filepath"

	"github.com/omnibuildplatform/omni-orchestrator/functions/notify/notify"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
	"github.com/omnibuildplatform/omni-orchestrator/shared/wiring"
)

func init() { registerEventFunction(notify.Name, newNotify) }

// newNotify builds notify with the local mode's values for what the environment leaves unset:
// the subscriptions file <data dir>/subscriptions.yaml, and callbacks to loopback allowed (the
// receivers of a local run, and the tests' httptest servers, are on this machine).
func newNotify(ctx context.Context, env wiring.Env, _ *wiring.Deps) (*runtime.Function, error) {
	ne, err := notify.ReadEnv()
	if err != nil {
		return nil, err
	}
	if _, set := os.LookupEnv("OMNI_NOTIFY_SUBSCRIPTIONS"); !set && env.DataDir != "" {
		ne.Subscriptions = filepath.Join(env.DataDir, "subscriptions.yaml")
	}
	if _, set := os.LookupEnv("OMNI_NOTIFY_CALLBACK_DENY"); !set {
		ne.CallbackDeny = notify.WithoutLoopback(ne.CallbackDeny)
	}
	return notify.New(ctx, ne)
}
