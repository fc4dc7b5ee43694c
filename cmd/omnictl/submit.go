package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/omnibuildplatform/omni-orchestrator/cmd/omnictl/internal/client"
)

// pairs is a repeatable flag of key=value pairs.
type pairs []string

func (p *pairs) String() string { return strings.Join(*p, ",") }

// Set checks and adds one key=value.
func (p *pairs) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("%q: want key=value", v)
	}
	*p = append(*p, v)
	return nil
}

// submitCmd: omnictl submit TASK --arch A [--param k=v… | --params-file f] [--wait] [--follow].
func (a *app) submitCmd(fs *flag.FlagSet) func(context.Context, []string) error {
	var req client.SubmitRequest
	var params, labels pairs
	fs.StringVar(&req.Service, "service", "", "the job's service (default: $OMNI_SERVICE or the config file's)")
	fs.StringVar(&req.Arch, "arch", "", "architecture: x86_64 or aarch64 (required)")
	fs.StringVar(&req.Domain, "domain", "", "the job's domain (e.g. openEuler-24.03)")
	fs.Var(&params, "param", "a parameter, name=value (repeatable); typed by the job type's schema: numbers, booleans, arrays as a,b,c or JSON, objects as JSON")
	paramsFile := fs.String("params-file", "", "the parameters as a JSON or YAML object (- reads stdin); --param values override its keys")
	fs.Var(&labels, "label", "a label of the job, key=value (repeatable)")
	fs.StringVar(&req.Class, "priority", "", "priority class (docs/queue.md), e.g. urgent, normal, background (default: the service's)")
	fs.StringVar(&req.Callback, "callback", "", "URL notified of every change of the job (docs/notify.md)")
	key := fs.String("idempotency-key", "", "a repeat with the same key (within 24 h) answers the first job instead of creating another")
	wait := fs.Bool("wait", false, "wait for the job's end; exit 0 succeeded, 1 failed, 2 cancelled or lost")
	follow := fs.Bool("follow", false, "print the log of every step as it is written until the job ends (implies --wait)")
	interval := fs.Duration("interval", time.Second, "how often --wait asks for the job")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, "TASK"); err != nil {
			return err
		}
		req.Task = args[0]
		c, cfg, err := a.client()
		if err != nil {
			return err
		}
		req.Service = firstOf(req.Service, cfg.Service)
		if req.Arch == "" {
			return usageError("submit: --arch is required (x86_64 or aarch64)")
		}
		if req.Parameters, err = a.parameters(ctx, c, req.Task, *paramsFile, params); err != nil {
			return err
		}
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			if req.Labels == nil {
				req.Labels = map[string]string{}
			}
			req.Labels[k] = v
		}
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		j, err := c.Submit(rctx, req, *key)
		cancel()
		if err != nil {
			return err
		}
		switch {
		case *follow:
			fmt.Fprintf(a.stderr, "job %s: %s\n", j.ID, j.Status)
			if err := a.followSteps(ctx, c, j, 0, stepNames(j), true); err != nil {
				return err
			}
			// The logs end once the job has ended and its steps are archived.
			if j, err = a.waitJob(ctx, c, j.ID, *interval, false); err != nil {
				return err
			}
			return a.outcome(j)
		case *wait:
			// The progress display names the job and its status.
			if j, err = a.waitJob(ctx, c, j.ID, *interval, true); err != nil {
				return err
			}
			if err := a.printJob(j); err != nil {
				return err
			}
			return a.outcome(j)
		}
		return a.printJob(j)
	}
}

// parameters builds the parameters of a submit: the file's object, then each --param, typed
// by the job type's schema.
func (a *app) parameters(ctx context.Context, c *client.Client, task, file string, params pairs) (map[string]any, error) {
	out := map[string]any{}
	if file != "" {
		var b []byte
		var err error
		if file == "-" {
			b, err = io.ReadAll(a.stdin)
		} else {
			b, err = os.ReadFile(file)
		}
		if err != nil {
			return nil, fmt.Errorf("read the parameters: %w", err)
		}
		// YAML is a superset of JSON: one decoder reads both.
		if err := yaml.Unmarshal(b, &out); err != nil {
			return nil, usageError("--params-file %s: want a JSON or YAML object: %v", file, err)
		}
		if out == nil {
			out = map[string]any{}
		}
	}
	if len(params) == 0 {
		return out, nil
	}
	// The schema types the values; without it (an unknown task, say) they stay strings and the
	// API names what is wrong.
	var s *schema
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if tasks, err := c.Tasks(ctx); err == nil {
		if t := findTask(tasks, task); t != nil {
			s = parseSchema(t.Schema)
		}
	}
	for _, p := range params {
		k, v, _ := strings.Cut(p, "=")
		out[k] = s.coerce(k, v)
	}
	return out, nil
}

// stepNames returns the names of the job's steps.
func stepNames(j *client.Job) []string {
	var out []string
	for _, s := range j.Steps {
		out = append(out, s.Name)
	}
	return out
}
