package cli

import "github.com/spf13/cobra"

// addCompletionHelp makes cobra's own `completion` command (bash, zsh, fish,
// powershell) part of the documented command line, with a word on where
// the script goes. Cobra creates the command when the root runs; creating
// it now lets its help be set.
func addCompletionHelp(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		c.Short = "Print the shell completion script for bash, zsh, fish or powershell"
		c.Long = `Print a script that completes mc-broker's commands and flags in your shell.
Load it once to try it, or install it so every new shell has it:

  bash:  mc-broker completion bash > ~/.local/share/bash-completion/completions/mc-broker
  zsh:   mc-broker completion zsh > "${fpath[1]}/_mc-broker"
  fish:  mc-broker completion fish > ~/.config/fish/completions/mc-broker.fish

"mc-broker completion SHELL --help" says more for each shell.`
	}
}
