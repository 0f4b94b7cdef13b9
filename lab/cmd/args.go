package cmd

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// Intersperse lets flags follow positional arguments, as kubectl and
// istioctl users type them (`meshlab get vs reviews -n default`): urfave/cli
// v2 stops reading flags at the first positional argument, so the flags of
// the named command are moved before its positional arguments. Everything
// after "--" is left as it is, and so are commands that parse their own
// arguments; a command with subcommands is read down to the one named.
func Intersperse(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		i++ // global flags
	}
	if i >= len(args) {
		return args
	}
	command := app.Command(args[i])
	// A subcommand's flags follow it (`rollout restart deploy/x -n ns`):
	// descend to the command that is run.
	for command != nil && len(command.Subcommands) > 0 && i+1 < len(args) {
		sub := command.Command(args[i+1])
		if sub == nil {
			break
		}
		i, command = i+1, sub
	}
	if command == nil || command.SkipFlagParsing || len(command.Subcommands) > 0 {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range command.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	head := append([]string{}, args[:i+1]...)
	var flags, positional []string
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		if a == "--" {
			positional = append(positional, rest[j:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if takesValue[name] && j+1 < len(rest) {
			j++
			flags = append(flags, rest[j])
		}
	}
	return append(append(head, flags...), positional...)
}
