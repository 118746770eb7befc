package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// loadSettings fills every flag of fs that was not given on the command line
// from the environment (CHIME_<FLAG>, dashes as underscores) and then from
// the YAML file named by --config (keys are flag names). Precedence:
// command line, then environment, then file, then the flag's default.
func loadSettings(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })

	fromFile := map[string]string{}
	cfgPath := ""
	if f := fs.Lookup("config"); f != nil {
		cfgPath = f.Value.String()
		if !explicit["config"] {
			if v, ok := os.LookupEnv(envName("config")); ok {
				cfgPath = v
			}
		}
	}
	if cfgPath != "" {
		b, err := os.ReadFile(cfgPath)
		if err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		var raw map[string]any
		if err := yaml.Unmarshal(b, &raw); err != nil {
			return fmt.Errorf("--config %s: %w", cfgPath, err)
		}
		for k, v := range raw {
			if fs.Lookup(k) == nil || k == "config" {
				return fmt.Errorf("--config %s: unknown setting %q (settings are the flag names, e.g. http-addr)", cfgPath, k)
			}
			switch vv := v.(type) {
			case nil:
				// "key:" with no value: unset, not the text "<nil>" (which
				// would, say, make a guessable cluster key).
				continue
			case []any:
				parts := make([]string, len(vv))
				for i, p := range vv {
					parts[i] = fmt.Sprint(p)
				}
				fromFile[k] = strings.Join(parts, ",")
			default:
				fromFile[k] = fmt.Sprint(vv)
			}
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || explicit[f.Name] || f.Name == "config" {
			return
		}
		// An empty CHIME_<NAME> is unset, as in the CLI's connection flags:
		// compose files pass optional settings as ${CHIME_X:-}, which must
		// neither shadow the config file nor fail to parse (bools, numbers).
		if v, ok := os.LookupEnv(envName(f.Name)); ok && v != "" {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %v", envName(f.Name), v, e)
			}
			return
		}
		if v, ok := fromFile[f.Name]; ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("--config %s: %s: %v", cfgPath, f.Name, e)
			}
		}
	})
	return err
}

func envName(flagName string) string {
	return "CHIME_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// listFlag is a comma-separated list flag (--join a:1,b:2 or repeated).
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}
