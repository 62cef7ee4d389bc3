package upload

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// TestProblemsListsEveryProblem: every Problem constant declared in the package is in Problems, once, so
// that each has its metrics series from the start.
func TestProblemsListsEveryProblem(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	for _, name := range files {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			if typ, ok := spec.Type.(*ast.Ident); !ok || typ.Name != "Problem" {
				return true
			}
			for _, v := range spec.Values {
				lit, _ := v.(*ast.BasicLit)
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				declared = append(declared, s)
			}
			return true
		})
	}
	var listed []string
	for _, p := range Problems {
		listed = append(listed, string(p))
	}
	slices.Sort(declared)
	slices.Sort(listed)
	if len(declared) == 0 || !slices.Equal(declared, listed) {
		t.Errorf("Problem constants declared: %v\nlisted in Problems: %v", declared, listed)
	}
}
