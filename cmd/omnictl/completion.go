package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
)

// completionCmd: omnictl completion bash|zsh|fish prints a script completing commands and
// their flags, made from the command table so that it never goes stale.
func (a *app) completionCmd(fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, "bash|zsh|fish"); err != nil {
			return err
		}
		switch args[0] {
		case "bash":
			writeBash(a.stdout, false)
		case "zsh":
			writeBash(a.stdout, true)
		case "fish":
			writeFish(a.stdout)
		default:
			return usageError("completion %q: want bash, zsh or fish", args[0])
		}
		return nil
	}
}

// commandFlags returns the flags of each command ("--name"), in command order.
func commandFlags() map[string][]string {
	out := map[string][]string{}
	for _, c := range commands {
		a := &app{stderr: io.Discard}
		fs := a.flagSet(c)
		c.setup(a, fs)
		fs.VisitAll(func(f *flag.Flag) {
			dash := "--"
			if len(f.Name) == 1 {
				dash = "-"
			}
			out[c.name] = append(out[c.name], dash+f.Name)
		})
	}
	return out
}

// writeBash writes the bash script (zsh runs it through bashcompinit).
func writeBash(w io.Writer, zsh bool) {
	if zsh {
		fmt.Fprintln(w, "#compdef omnictl\nautoload -U +X bashcompinit && bashcompinit")
	}
	fmt.Fprintf(w, `# omnictl completion for bash: source <(omnictl completion bash)
_omnictl() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W %q -- "$cur")); return
  fi
  case "$prev" in
    -o) COMPREPLY=($(compgen -W "table json yaml" -- "$cur")); return;;
    --arch) COMPREPLY=($(compgen -W "x86_64 aarch64" -- "$cur")); return;;
    --status) COMPREPLY=($(compgen -W "queued pending running succeeded failed cancelled lost" -- "$cur")); return;;
  esac
  case "${COMP_WORDS[1]}" in
`, strings.Join(commandNames(), " "))
	flags := commandFlags()
	for _, c := range commands {
		words := strings.Join(flags[c.name], " ")
		if c.name == "completion" {
			words = "bash zsh fish"
		}
		fmt.Fprintf(w, "    %s) COMPREPLY=($(compgen -W %q -- \"$cur\"));;\n", c.name, words)
	}
	fmt.Fprintln(w, "  esac\n}\ncomplete -o default -F _omnictl omnictl")
}

// writeFish writes the fish script.
func writeFish(w io.Writer) {
	fmt.Fprintln(w, "# omnictl completion for fish: omnictl completion fish | source")
	fmt.Fprintln(w, "complete -c omnictl -f")
	for _, c := range commands {
		fmt.Fprintf(w, "complete -c omnictl -n __fish_use_subcommand -a %s -d %q\n", c.name, c.summary)
	}
	flags := commandFlags()
	for _, c := range commands {
		for _, f := range flags[c.name] {
			opt := "-l " + strings.TrimLeft(f, "-")
			if !strings.HasPrefix(f, "--") {
				opt = "-s " + strings.TrimLeft(f, "-")
			}
			fmt.Fprintf(w, "complete -c omnictl -n '__fish_seen_subcommand_from %s' %s\n", c.name, opt)
		}
	}
	fmt.Fprintln(w, "complete -c omnictl -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'")
}
