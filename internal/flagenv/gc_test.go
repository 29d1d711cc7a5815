package flagenv

import (
	"flag"
	"runtime/debug"
	"testing"
)

// --gc-percent sets the process's collector target: DefaultGCPercent,
// GOGC instead when set, the flag's variable or the flag itself over
// both.
func TestGCFlag(t *testing.T) {
	for _, c := range []struct {
		name, gogc, env string
		args            []string
		want            int
	}{
		{name: "default", want: DefaultGCPercent},
		{name: "GOGC", gogc: "50", want: 50},
		{name: "GOGC not a number", gogc: "off", want: DefaultGCPercent},
		{name: "variable", gogc: "50", env: "150", want: 150},
		{name: "flag", gogc: "50", env: "150", args: []string{"--gc-percent", "300"}, want: 300},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("GOGC", c.gogc)
			if c.env != "" {
				t.Setenv(EnvName("gc-percent"), c.env)
			}
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			apply := GCFlag(fs)
			if err := Parse(fs, c.args); err != nil {
				t.Fatal(err)
			}
			prev := debug.SetGCPercent(100)
			defer debug.SetGCPercent(prev)
			apply()
			if got := debug.SetGCPercent(100); got != c.want {
				t.Fatalf("collector target %d, want %d", got, c.want)
			}
		})
	}
}
