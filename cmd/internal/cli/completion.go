package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mc-broker/mc-broker/broker"
)

// addCompletionHelp makes cobra's own `completion` command (bash, zsh, fish,
// powershell) part of the documented command line, with a word on where
// the script goes. Cobra creates the command when the root runs; creating
// it now lets its help be set. Cobra's command prints its help and exits 0
// for a shell it does not know (`completion tcsh`); here that is a usage
// error naming the shells there are.
func addCompletionHelp(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		var shells []string
		for _, sub := range c.Commands() {
			shells = append(shells, sub.Name())
		}
		c.Short = "Print the shell completion script for bash, zsh, fish or powershell"
		c.Long = `Print a script that completes mc-broker's commands and flags in your shell.
Load it once to try it, or install it so every new shell has it:

  bash:        mc-broker completion bash > ~/.local/share/bash-completion/completions/mc-broker
  zsh:         mc-broker completion zsh > "${fpath[1]}/_mc-broker"
  fish:        mc-broker completion fish > ~/.config/fish/completions/mc-broker.fish
  powershell:  mc-broker completion powershell >> $PROFILE

"mc-broker completion SHELL --help" says more for each shell.`
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return &ExitError{
				Code: broker.ExitUsage,
				Err:  fmt.Errorf("completion: unknown shell %q: mc-broker completes %s", args[0], strings.Join(shells, ", ")),
				Hint: "see mc-broker completion --help",
			}
		}
	}
}
