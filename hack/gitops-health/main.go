// gitops-health prints what Argo CD and Flux make of Kubernetes objects, with their own code:
//
//   - Argo CD: a resource.customizations.health Lua script (from argocd-cm) run the way
//     argo-cd's util/lua runs one, in gopher-lua with only the libraries Argo CD opens for it;
//   - Flux: sigs.k8s.io/cli-utils pkg/kstatus/status Compute, the kstatus verdict Flux's health
//     checks (Kustomization wait/healthChecks) act on.
//
// Usage: gitops-health [--argo-script FILE] < objects.json
// stdin is a JSON array of objects; stdout is a JSON array with, per object,
// {"argo":{"status","message"},"flux":{"status","message"}} ("argo" only with --argo-script), or
// {"error": "..."} when the object is not a Kubernetes object (no apiVersion/kind). A kstatus
// error is the Flux status "Error" with the error as its message. Exit 0 unless the arguments or
// stdin are bad.
//
// Importing argo-cd's util/lua itself is not possible as a Go module: github.com/argoproj/argo-cd/v3
// requires github.com/argoproj/argo-cd/gitops-engine/v3 at v0.0.0-00010101000000-000000000000
// through a local replace (./gitops-engine), which does not apply to a dependent module. So this
// program opens the same libraries with the same gopher-lua version (v1.1.2, as argo-cd's go.mod)
// and the same result encoding (layeh.com/gopher-json). Facts taken from argo-cd v3.6.0 (VERSION
// file at commit 37ee0097cf851bc2dd7665fc081bbce61a7e836e, 2026-08-22), util/lua/lua.go
// runLuaWithResourceActionParameters, ExecuteHealthLua and oslib_safe.go, and
// gitops-engine/pkg/health/health.go GetResourceHealth:
//   - lua.NewState with SkipOpenLibs unless the argocd-cm key resource.customizations.useOpenLibs
//     is set (not by our README), then in this order: package, base, table and a "safe os"
//     (only time and date). The safe os is registered under the name of the table library,
//     which is loaded already, so that registration adds nothing: the global `os` stays nil and
//     only require("os") (a preloaded module) gives time and date. No string, math, io,
//     coroutine, debug or channel library.
//   - a 1 s context deadline; the object is the global `obj` (integers become Lua numbers, which
//     gopher-lua prints without ".0"); `actionParams` is an empty table.
//   - a run error (stack trace dropped) becomes Unknown with the error text as the message; a
//     returned table is JSON-encoded and read as {status, message}; a status outside Unknown,
//     Progressing, Suspended, Healthy, Degraded, Missing becomes Unknown "Lua returned an invalid
//     health status"; an empty table or nil gives an empty health; any other type is an error.
//   - an object with metadata.deletionTimestamp (and no hook finalizer) is Progressing
//     "Pending deletion" before any script runs.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type result struct {
	Argo  *verdict `json:"argo,omitempty"`
	Flux  *verdict `json:"flux,omitempty"`
	Error string   `json:"error,omitempty"`
}

var argoStatuses = map[string]bool{"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true}

func main() {
	script := flag.String("argo-script", "", "Argo CD health Lua script (argocd-cm resource.customizations.health.<group>_<kind>)")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: gitops-health [--argo-script FILE] < objects.json")
		os.Exit(2)
	}
	var code []byte
	if *script != "" {
		var err error
		if code, err = os.ReadFile(*script); err != nil {
			fmt.Fprintln(os.Stderr, "gitops-health:", err)
			os.Exit(2)
		}
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gitops-health:", err)
		os.Exit(2)
	}
	var objects []json.RawMessage
	if err := json.Unmarshal(in, &objects); err != nil {
		fmt.Fprintln(os.Stderr, "gitops-health: stdin is not a JSON array:", err)
		os.Exit(2)
	}
	out := make([]result, 0, len(objects))
	for _, raw := range objects {
		u := &unstructured.Unstructured{}
		// Decodes as the API machinery does for Argo CD's cache and Flux: integers as int64.
		if err := u.UnmarshalJSON(raw); err != nil {
			out = append(out, result{Error: err.Error()})
			continue
		}
		r := result{Flux: fluxHealth(u)}
		if code != nil {
			r.Argo = argoHealth(u, string(code))
		}
		out = append(out, r)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "gitops-health:", err)
		os.Exit(1)
	}
}

func fluxHealth(u *unstructured.Unstructured) *verdict {
	r, err := status.Compute(u)
	if err != nil {
		return &verdict{Status: "Error", Message: err.Error()}
	}
	return &verdict{Status: r.Status.String(), Message: r.Message}
}

func argoHealth(u *unstructured.Unstructured, script string) *verdict {
	if u.GetDeletionTimestamp() != nil && !hasHookFinalizer(u) {
		return &verdict{Status: "Progressing", Message: "Pending deletion"}
	}
	h, err := runHealthLua(u, script)
	if err != nil {
		return &verdict{Status: "Unknown", Message: err.Error()}
	}
	return h
}

func hasHookFinalizer(u *unstructured.Unstructured) bool {
	for _, f := range u.GetFinalizers() {
		if f == "argocd.argoproj.io/hook-finalizer" {
			return true
		}
	}
	return false
}

func runHealthLua(u *unstructured.Unstructured, script string) (*verdict, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	l.PreloadModule(lua.OsLibName, func(l *lua.LState) int {
		l.Push(l.SetFuncs(l.NewTable(), safeOsFuncs))
		return 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", toLua(l, u.Object))

	fn, err := l.LoadString(script)
	if err == nil {
		l.Push(fn)
		err = l.PCall(0, lua.MultRet, nil)
	}
	var apiErr *lua.ApiError
	if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
		apiErr.StackTrace = ""
		err = apiErr
	}
	if err != nil {
		return nil, err
	}
	ret := l.Get(-1)
	switch ret.Type() {
	case lua.LTNil:
		return &verdict{}, nil
	case lua.LTTable:
	default:
		return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type().String())
	}
	encoded, err := luajson.Encode(ret)
	if err != nil {
		return nil, err
	}
	var h verdict
	if err := json.Unmarshal(encoded, &h); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Value == "array" {
			return &verdict{}, nil // an empty table encodes as []
		}
		return nil, err
	}
	if !argoStatuses[h.Status] {
		return &verdict{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return &h, nil
}

// openSafeOs registers the safe os functions the way Argo CD does: under the table library's
// name. gopher-lua's RegisterModule returns an already loaded module unchanged, so this adds
// nothing to `table` and creates no global `os`.
func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.TabLibName, safeOsFuncs))
	return 1
}

var safeOsFuncs = map[string]lua.LGFunction{"time": osTime, "date": osDate}

func intField(t *lua.LTable, key string, def int) int {
	if n, ok := t.RawGetString(key).(lua.LNumber); ok {
		return int(n)
	}
	return def
}

func osTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	t := l.CheckTable(1)
	at := time.Date(intField(t, "year", -1), time.Month(intField(t, "month", -1)), intField(t, "day", -1),
		intField(t, "hour", 12), intField(t, "min", 0), intField(t, "sec", 0), 0, time.Local)
	l.Push(lua.LNumber(at.Unix()))
	return 1
}

var dateLayouts = map[byte]string{
	'a': "Mon", 'A': "Monday", 'b': "Jan", 'B': "January", 'c': "02 Jan 06 15:04 MST", 'd': "02",
	'F': "2006-01-02", 'H': "15", 'I': "03", 'm': "01", 'M': "04", 'p': "PM", 'P': "pm", 'S': "05",
	'x': "15/04/05", 'X': "15:04:05", 'y': "06", 'Y': "2006", 'z': "-0700", 'Z': "MST",
}

func osDate(l *lua.LState) int {
	t := time.Now()
	format := "%c"
	if l.GetTop() >= 1 {
		format = l.CheckString(1)
		if strings.HasPrefix(format, "!") {
			t = t.UTC()
			format = strings.TrimLeft(format, "!")
		}
		if l.GetTop() >= 2 {
			t = time.Unix(l.CheckInt64(2), 0)
		}
		if strings.HasPrefix(format, "*t") {
			tb := l.NewTable()
			for k, v := range map[string]int{"year": t.Year(), "month": int(t.Month()), "day": t.Day(), "hour": t.Hour(), "min": t.Minute(), "sec": t.Second(), "wday": int(t.Weekday()) + 1, "yday": 0} {
				tb.RawSetString(k, lua.LNumber(v))
			}
			tb.RawSetString("isdst", lua.LFalse) // Argo CD leaves yday at 0 and isdst false
			l.Push(tb)
			return 1
		}
	}
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 == len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		switch f := format[i]; {
		case f == '%':
			b.WriteByte('%')
		case f == 'w':
			fmt.Fprint(&b, int(t.Weekday()))
		case dateLayouts[f] != "":
			b.WriteString(t.Format(dateLayouts[f]))
		default:
			b.WriteByte('%')
			b.WriteByte(f)
		}
	}
	l.Push(lua.LString(b.String()))
	return 1
}

// toLua converts decoded JSON the way Argo CD hands an object to its scripts: numbers (int64 or
// float64) as Lua numbers, arrays as sequences, maps as tables, null as nil.
func toLua(l *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case bool:
		return lua.LBool(x)
	case float64:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case int:
		return lua.LNumber(x)
	case int32:
		return lua.LNumber(x)
	case json.Number:
		return lua.LString(x)
	case string:
		return lua.LString(x)
	case []any:
		t := l.CreateTable(len(x), 0)
		for _, item := range x {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(x))
		for k, item := range x {
			t.RawSetH(lua.LString(k), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}
