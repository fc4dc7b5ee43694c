package deploy

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// codeFacts is what the source of one binary (its package and every package of this module it
// imports) reads from the environment and whether it sends events itself.
type codeFacts struct {
	// Env maps each variable the binary reads to where (struct field or call).
	Env map[string]string
	// Emits says the binary calls an Emit method (it sends events to K_SINK itself).
	Emits bool
}

type goPackage struct {
	ImportPath string
	Name       string
	Dir        string
	GoFiles    []string
	Module     *struct{ Path string }
	files      []*ast.File
}

// scanBinary finds, without running or type-checking anything, the environment variables the
// binary pkg reads: the envconfig tags of every struct passed to envconfig.Process (with its
// prefix), and the literal names passed to os.Getenv / os.LookupEnv, in the functions of this
// module that its main may run (see reachable). A read this scan cannot see (a name computed at
// run time) is not reported; the functions read their settings through envconfig structs,
// which it sees.
func scanBinary(t testing.TB, pkg string) codeFacts {
	t.Helper()
	root := repoRoot(t)
	out := command(t, context.Background(), root, nil, "go", "list", "-deps", "-json", pkg)
	dec := json.NewDecoder(strings.NewReader(string(out)))
	pkgs := map[string]*goPackage{}
	fset := token.NewFileSet()
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || p.Module.Path != modulePath {
			continue
		}
		for _, f := range p.GoFiles {
			af, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			p.files = append(p.files, af)
		}
		pkgs[p.ImportPath] = &p
	}
	facts := codeFacts{Env: map[string]string{}}
	for _, fn := range reachable(pkgs, pkg) {
		p, fd, imports := fn.pkg, fn.decl, fn.imports
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			x, _ := sel.X.(*ast.Ident)
			switch {
			case sel.Sel.Name == "Emit" && strings.HasPrefix(p.ImportPath, modulePath+"/functions/"):
				facts.Emits = true
			case x != nil && imports[x.Name] == "os" && (sel.Sel.Name == "Getenv" || sel.Sel.Name == "LookupEnv") && len(call.Args) == 1:
				if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					name, _ := strconv.Unquote(lit.Value)
					facts.Env[name] = p.ImportPath + ": os." + sel.Sel.Name
				}
			case x != nil && imports[x.Name] == "github.com/kelseyhightower/envconfig" &&
				(sel.Sel.Name == "Process" || sel.Sel.Name == "MustProcess") && len(call.Args) == 2:
				prefix := ""
				if lit, ok := call.Args[0].(*ast.BasicLit); ok {
					prefix, _ = strconv.Unquote(lit.Value)
				}
				typePkg, typeName := varType(fd, call.Args[1], p.ImportPath, imports)
				if typeName == "" && p.ImportPath == modulePath+"/shared/runtime" {
					// runtime.Main reads the settings struct of the binary's main package
					// (a type parameter here): scanned from main's settings type below.
					return true
				}
				st, declPkg, declImports := findStruct(pkgs, typePkg, typeName)
				if st == nil {
					t.Errorf("%s: envconfig.Process of %s: cannot find struct %s.%s", p.ImportPath, exprString(call.Args[1]), typePkg, typeName)
					return true
				}
				for name, field := range envFields(pkgs, declPkg, st, declImports, prefix) {
					facts.Env[name] = typePkg + "." + typeName + "." + field
				}
			}
			return true
		})
	}
	// The settings runtime.Main reads: the type `settings` of the main package.
	for path, p := range pkgs {
		if p.Name != "main" || !(path == pkg || strings.HasSuffix(pkg, strings.TrimPrefix(path, modulePath))) {
			continue
		}
		if st, declPkg, declImports := findStruct(pkgs, path, "settings"); st != nil {
			for name, field := range envFields(pkgs, declPkg, st, declImports, "") {
				facts.Env[name] = path + ".settings." + field
			}
		}
	}
	return facts
}

// funcRef is a function declaration with its package and the imports of its file.
type funcRef struct {
	pkg     *goPackage
	decl    *ast.FuncDecl
	imports map[string]string
}

// reachable returns the functions of this module that main of pkg may run: main.main and every
// init, then whatever they name — a function of their package or of an imported one, called or
// passed as a value — and, since types are not checked, every method of the module whose name
// they select. An over-approximation, but one that follows what main wires up rather than
// everything the imported packages contain.
func reachable(pkgs map[string]*goPackage, mainPkg string) []funcRef {
	funcs := map[string]map[string]funcRef{} // package → name → plain function
	methods := map[string][]funcRef{}        // name → methods of any type
	var roots []funcRef
	for _, p := range pkgs {
		funcs[p.ImportPath] = map[string]funcRef{}
		for _, f := range p.files {
			imports := fileImports(f)
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Body == nil {
					continue
				}
				ref := funcRef{p, fd, imports}
				switch {
				case fd.Recv != nil:
					methods[fd.Name.Name] = append(methods[fd.Name.Name], ref)
				case fd.Name.Name == "init":
					roots = append(roots, ref)
				default:
					funcs[p.ImportPath][fd.Name.Name] = ref
				}
			}
		}
	}
	for path, fs := range funcs {
		if main, ok := fs["main"]; ok && (path == mainPkg || strings.HasSuffix(mainPkg, strings.TrimPrefix(path, modulePath))) {
			roots = append(roots, main)
		}
	}
	seen := map[*ast.FuncDecl]bool{}
	var out []funcRef
	queue := roots
	for len(queue) > 0 {
		fn := queue[0]
		queue = queue[1:]
		if seen[fn.decl] {
			continue
		}
		seen[fn.decl] = true
		out = append(out, fn)
		ast.Inspect(fn.decl.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok {
					if path, ok := fn.imports[x.Name]; ok {
						if ref, ok := funcs[path][n.Sel.Name]; ok {
							queue = append(queue, ref)
						}
						return false
					}
				}
				queue = append(queue, methods[n.Sel.Name]...)
			case *ast.Ident:
				if ref, ok := funcs[fn.pkg.ImportPath][n.Name]; ok {
					queue = append(queue, ref)
				}
			}
			return true
		})
	}
	return out
}

func fileImports(f *ast.File) map[string]string {
	m := map[string]string{}
	for _, im := range f.Imports {
		path, _ := strconv.Unquote(im.Path.Value)
		name := filepath.Base(path)
		if strings.HasPrefix(name, "v") && len(name) <= 3 { // .../sdk-go/v2
			name = filepath.Base(filepath.Dir(path))
		}
		if im.Name != nil {
			name = im.Name.Name
		}
		m[name] = path
	}
	return m
}

// varType resolves the type of the variable an envconfig.Process call fills (`&env` or `env`)
// from its declaration in the same function: `var env T`, `env := T{}` or `env := &T{}`.
func varType(fd *ast.FuncDecl, arg ast.Expr, pkg string, imports map[string]string) (string, string) {
	if u, ok := arg.(*ast.UnaryExpr); ok {
		arg = u.X
	}
	id, ok := arg.(*ast.Ident)
	if !ok {
		return "", ""
	}
	var typ ast.Expr
	ast.Inspect(fd.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.ValueSpec:
			for _, nm := range n.Names {
				if nm.Name == id.Name && n.Type != nil {
					typ = n.Type
				}
			}
		case *ast.AssignStmt:
			for i, l := range n.Lhs {
				if li, ok := l.(*ast.Ident); ok && li.Name == id.Name && i < len(n.Rhs) {
					r := n.Rhs[i]
					if u, ok := r.(*ast.UnaryExpr); ok {
						r = u.X
					}
					if cl, ok := r.(*ast.CompositeLit); ok {
						typ = cl.Type
					}
				}
			}
		}
		return typ == nil
	})
	if typ == nil && fd.Type.Params != nil {
		for _, f := range fd.Type.Params.List {
			for _, nm := range f.Names {
				if nm.Name == id.Name {
					typ = f.Type
				}
			}
		}
	}
	if s, ok := typ.(*ast.StarExpr); ok {
		typ = s.X
	}
	switch ty := typ.(type) {
	case *ast.Ident:
		return pkg, ty.Name
	case *ast.SelectorExpr:
		if x, ok := ty.X.(*ast.Ident); ok {
			return imports[x.Name], ty.Sel.Name
		}
	}
	return "", ""
}

// findStruct finds the struct type pkg.name, following a type alias to another package's
// struct, and returns it with the package it is declared in and the imports of its file.
func findStruct(pkgs map[string]*goPackage, pkg, name string) (*ast.StructType, string, map[string]string) {
	p := pkgs[pkg]
	if p == nil {
		return nil, "", nil
	}
	for _, f := range p.files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, s := range gd.Specs {
				ts, ok := s.(*ast.TypeSpec)
				if !ok || ts.Name.Name != name {
					continue
				}
				imports := fileImports(f)
				switch ty := ts.Type.(type) {
				case *ast.StructType:
					return ty, pkg, imports
				case *ast.Ident:
					return findStruct(pkgs, pkg, ty.Name)
				case *ast.SelectorExpr:
					if x, ok := ty.X.(*ast.Ident); ok {
						return findStruct(pkgs, imports[x.Name], ty.Sel.Name)
					}
				}
				return nil, "", nil
			}
		}
	}
	return nil, "", nil
}

// envFields maps the variables envconfig reads for st (declared in pkg, in a file with imports)
// to the field names, the way envconfig does: the `envconfig` tag or the upper-cased field name,
// PREFIX_ before it when a prefix is given; `ignored:"true"` and `envconfig:"-"` fields skipped;
// embedded structs inlined, of this package or another.
func envFields(pkgs map[string]*goPackage, pkg string, st *ast.StructType, imports map[string]string, prefix string) map[string]string {
	out := map[string]string{}
	for _, f := range st.Fields.List {
		tag := reflect.StructTag("")
		if f.Tag != nil {
			s, _ := strconv.Unquote(f.Tag.Value)
			tag = reflect.StructTag(s)
		}
		if tag.Get("ignored") == "true" || tag.Get("envconfig") == "-" {
			continue
		}
		if len(f.Names) == 0 { // embedded
			var inner *ast.StructType
			var innerPkg string
			var innerImports map[string]string
			switch ty := f.Type.(type) {
			case *ast.Ident:
				inner, innerPkg, innerImports = findStruct(pkgs, pkg, ty.Name)
			case *ast.SelectorExpr:
				if x, ok := ty.X.(*ast.Ident); ok {
					inner, innerPkg, innerImports = findStruct(pkgs, imports[x.Name], ty.Sel.Name)
				}
			}
			if inner != nil {
				for k, v := range envFields(pkgs, innerPkg, inner, innerImports, prefix) {
					out[k] = v
				}
			}
			continue
		}
		for _, nm := range f.Names {
			if !nm.IsExported() {
				continue
			}
			key := tag.Get("envconfig")
			if key == "" {
				key = strings.ToUpper(nm.Name)
			}
			if prefix != "" {
				key = strings.ToUpper(prefix) + "_" + key
			}
			out[key] = nm.Name
		}
	}
	return out
}

func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.UnaryExpr:
		return "&" + exprString(e.X)
	}
	return "?"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
