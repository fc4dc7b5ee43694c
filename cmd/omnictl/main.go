// Command omnictl is the command-line client of omni-orchestrator: it submits build jobs,
// lists and follows them, streams their logs and shows the build queue, speaking only the
// public HTTP API (docs/api.md). It links no server-side dependency, so that
//
//	go install github.com/omnibuildplatform/omni-orchestrator/cmd/omnictl@latest
//
// gives a small binary for any machine. See docs/cli.md.
//
// Exit status: 0 success; for wait, submit --wait and submit --follow, 1 the job failed and
// 2 it was cancelled or lost; 3 any error (the API's answer, the network, the command line).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/term"
)

// Exit statuses (docs/cli.md).
const (
	exitOK        = 0
	exitFailed    = 1 // the job failed
	exitCancelled = 2 // the job was cancelled or lost
	exitError     = 3 // the command could not do what was asked
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &app{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv,
		stdinTTY:  term.IsTerminal(int(os.Stdin.Fd())),
		stdoutTTY: term.IsTerminal(int(os.Stdout.Fd())),
		stderrTTY: term.IsTerminal(int(os.Stderr.Fd())),
	}
	os.Exit(a.run(ctx, os.Args[1:]))
}

// app is one invocation: its standard streams, environment and the settings of its flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// stdinTTY, stdoutTTY and stderrTTY say which streams are terminals.
	stdinTTY, stdoutTTY, stderrTTY bool

	// Flags every command has.
	output, url, user string
}

// exitError carries an exit status other than exitError out of a command.
type exitStatus struct {
	code int
	err  error // printed when not nil
}

func (e *exitStatus) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// command is one verb of omnictl.
type command struct {
	name, args, summary string
	// setup declares the command's flags on fs and returns the function that runs it with the
	// positional arguments.
	setup func(a *app, fs *flag.FlagSet) func(ctx context.Context, args []string) error
}

// commands are omnictl's verbs, in the order help lists them.
var commands []*command

func init() {
	commands = []*command{
		{"login", "[URL]", "check and store the API's URL and credentials in the config file", (*app).loginCmd},
		{"tasks", "", "list the job types with a summary of their parameters", (*app).tasksCmd},
		{"submit", "TASK", "submit a job (--wait for its end, --follow its logs)", (*app).submitCmd},
		{"get", "ID", "show a job", (*app).getCmd},
		{"list", "", "list jobs, newest first (--watch for changes)", (*app).listCmd},
		{"logs", "ID", "print a step's log (-f to follow it live and into the archive)", (*app).logsCmd},
		{"download", "ID STEP", "write a step's archived log, byte for byte, to stdout", (*app).downloadCmd},
		{"cancel", "ID", "cancel a queued or running job", (*app).cancelCmd},
		{"rerun", "ID", "queue a new job with the request of a job", (*app).rerunCmd},
		{"queue", "", "show the build queue: waiting jobs and the slots of each instance", (*app).queueCmd},
		{"wait", "ID", "wait for a job's end; exit 0 succeeded, 1 failed, 2 cancelled or lost", (*app).waitCmd},
		{"completion", "bash|zsh|fish", "print a shell completion script", (*app).completionCmd},
	}
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// run runs one command line and returns the exit status.
func (a *app) run(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c := lookup(args[1]); c != nil {
				fs := a.flagSet(c)
				c.setup(a, fs)
				fs.SetOutput(a.stdout)
				fs.Usage()
				return exitOK
			}
		}
		a.usage(a.stdout)
		if len(args) == 0 {
			return exitError
		}
		return exitOK
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(a.stderr, "omnictl: unknown command %q\n\n", args[0])
		a.usage(a.stderr)
		return exitError
	}
	fs := a.flagSet(c)
	runCmd := c.setup(a, fs)
	pos, err := parseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err == nil {
		err = a.checkOutput()
	}
	if err == nil {
		err = runCmd(ctx, pos)
	}
	var es *exitStatus
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &es):
		if es.err != nil {
			fmt.Fprintln(a.stderr, "omnictl:", oneLine(es.err.Error()))
		}
		return es.code
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		fmt.Fprintln(a.stderr, "omnictl: interrupted")
		return exitError
	default:
		fmt.Fprintln(a.stderr, "omnictl:", oneLine(err.Error()))
		return exitError
	}
}

// oneLine folds a message onto one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// flagSet returns c's flag set with the flags every command has.
func (a *app) flagSet(c *command) *flag.FlagSet {
	fs := flag.NewFlagSet("omnictl "+c.name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.StringVar(&a.output, "o", "", "output format: table, json or yaml (default: table; tab-separated without a header when stdout is not a terminal)")
	fs.StringVar(&a.url, "url", "", "base URL of the API (default: $OMNI_URL, then the config file)")
	fs.StringVar(&a.user, "user", "", "user name (default: $OMNI_USER, then the config file)")
	fs.Usage = func() {
		args := c.args
		if args != "" {
			args += " "
		}
		fmt.Fprintf(fs.Output(), "usage: omnictl %s %s[flags]\n\n%s.\n\nflags:\n", c.name, args, c.summary)
		fs.PrintDefaults()
	}
	return fs
}

func (a *app) checkOutput() error {
	switch a.output {
	case "", "table", "json", "yaml":
		return nil
	}
	return usageError("-o %q: want table, json or yaml", a.output)
}

func (a *app) usage(w io.Writer) {
	fmt.Fprintln(w, "omnictl — the command-line client of omni-orchestrator (docs/cli.md)")
	fmt.Fprintln(w, "\nusage: omnictl COMMAND [ARGS] [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\n`omnictl help COMMAND` (or COMMAND -h) lists a command's flags. The API and credentials come from")
	fmt.Fprintln(w, "flags, then OMNI_URL / OMNI_USER / OMNI_PASSWORD, then the file `omnictl login` writes.")
	fmt.Fprintln(w, "Exit status: 0 success; 1 the job failed, 2 cancelled or lost (wait, submit --wait/--follow); 3 an error.")
}

// usageError is an error of the command line.
func usageError(format string, args ...any) error {
	return &exitStatus{code: exitError, err: fmt.Errorf(format, args...)}
}

// parseInterspersed parses flags wherever they are among the positional arguments (Go's flag
// package stops at the first positional one) and returns the positional ones; after "--" all
// are positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// wantArgs checks the number of positional arguments.
func wantArgs(args []string, names ...string) error {
	if len(args) != len(names) {
		if len(names) == 0 {
			return usageError("unexpected argument %q", args[0])
		}
		return usageError("want %s, got %d argument(s)", strings.Join(names, " "), len(args))
	}
	return nil
}

// commandNames returns the commands' names, sorted.
func commandNames() []string {
	var out []string
	for _, c := range commands {
		out = append(out, c.name)
	}
	sort.Strings(out)
	return out
}
