// Command mc-broker keeps container copies of your CLI logins in step.
package main

import (
	"os"

	"github.com/mc-broker/mc-broker/cmd/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.OSFactory()))
}
