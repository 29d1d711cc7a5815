// Package flagenv lets every command-line flag also be set by an
// environment variable, HELLOCHAT_<FLAG> (dashes become underscores), which
// is how container and systemd deployments usually configure a process.
// A flag given on the command line wins over the variable.
package flagenv

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// EnvName is the variable that sets a flag.
func EnvName(flagName string) string {
	return "HELLOCHAT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse applies the environment to fs, then parses args. Usage lists each
// flag's variable.
func Parse(fs *flag.FlagSet, args []string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage += fmt.Sprintf(" [$%s]", EnvName(f.Name))
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok && err == nil {
			if serr := f.Value.Set(v); serr != nil {
				err = fmt.Errorf("$%s=%q: %w", EnvName(f.Name), v, serr)
			}
		}
	})
	if err != nil {
		return err
	}
	return fs.Parse(args)
}

// List splits a comma-separated flag value, dropping empty items.
func List(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
