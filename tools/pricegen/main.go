package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pricegen:", err)
		os.Exit(1)
	}
}

// run converts the list named by the flags and writes the table; it says
// on stdout what it converted and skipped.
func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pricegen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	list := fs.String("list", "", "the price list: the JSON array of providers of @pydantic/genai-prices")
	pkg := fs.String("package", "", "the package.json of the npm package the list comes from")
	overlay := fs.String("overlay", "", "the overlay: providers converted, models added, models required (fleet/pricing_overlay.json)")
	asOf := fs.String("as-of", "", "the snapshot date, YYYY-MM-DD: dated prices in effect on it are taken")
	out := fs.String("out", "", "the table to write (fleet/pricing.json); - for stdout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *list == "" || *pkg == "" || *overlay == "" || *asOf == "" || *out == "" {
		fs.Usage()
		return errors.New("-list, -package, -overlay, -as-of and -out are required")
	}
	var inputs [3][]byte
	for i, path := range []string{*list, *pkg, *overlay} {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		inputs[i] = b
	}
	table, rep, err := convert(inputs[0], inputs[1], inputs[2], *asOf)
	if err != nil {
		return err
	}
	if *out == "-" {
		if _, err := stdout.Write(table); err != nil {
			return err
		}
	} else if err := os.WriteFile(*out, table, 0o644); err != nil {
		return err
	}
	var reasons []string
	for _, k := range sortedKeys(rep.Reasons) {
		reasons = append(reasons, fmt.Sprintf("%s: %d", k, rep.Reasons[k]))
	}
	fmt.Fprintf(stderr, "pricegen: %d models of %d providers converted (%d with tiers), %d added by the overlay; "+
		"%d models skipped (%s); %d providers (%d models) not converted\n",
		rep.Converted, rep.Providers, rep.Tiered, rep.Overlay, rep.SkippedModels, strings.Join(reasons, ", "),
		rep.SkippedProviders, rep.SkippedInProviders)
	return nil
}
