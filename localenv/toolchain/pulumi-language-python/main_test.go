package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestResolvePythonVirtualenvRelativeToRoot(t *testing.T) {
	root := t.TempDir()
	py := filepath.Join(root, "venv", "bin", "python")
	if err := os.MkdirAll(filepath.Dir(py), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(py, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	opts, err := structpb.NewStruct(map[string]any{"virtualenv": "venv"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := resolvePython(&pulumirpc.ProgramInfo{RootDirectory: root, ProgramDirectory: root, Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	if got.python != py {
		t.Fatalf("python = %s, want %s", got.python, py)
	}
	venv := filepath.Join(root, "venv")
	for _, want := range []string{"VIRTUAL_ENV=" + venv, "PULUMI_RUNTIME_VIRTUALENV=" + venv} {
		if !slices.Contains(got.env, want) {
			t.Errorf("env lacks %s", want)
		}
	}
}

func TestResolvePythonMissingVirtualenvIsAnError(t *testing.T) {
	opts, _ := structpb.NewStruct(map[string]any{"virtualenv": "nope"})
	if _, err := resolvePython(&pulumirpc.ProgramInfo{RootDirectory: t.TempDir(), Options: opts}); err == nil {
		t.Fatal("expected an error for a virtualenv without bin/python")
	}
}

func TestResolvePythonCmdFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	py := filepath.Join(dir, "mypython")
	if err := os.WriteFile(py, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PULUMI_PYTHON_CMD", py)
	got, err := resolvePython(&pulumirpc.ProgramInfo{RootDirectory: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got.python != py {
		t.Fatalf("python = %s, want %s", got.python, py)
	}
}

func TestWithEnvReplaces(t *testing.T) {
	env := withEnv([]string{"A=1", "B=2", "AB=3"}, "A", "9")
	if !slices.Equal(env, []string{"B=2", "AB=3", "A=9"}) {
		t.Fatalf("env = %v", env)
	}
}
