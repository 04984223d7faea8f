package main

import (
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

func inputs(kv map[string]any) resource.PropertyMap {
	m := resource.PropertyMap{
		"upper": resource.NewBoolProperty(true), "lower": resource.NewBoolProperty(true),
		"numeric": resource.NewBoolProperty(true), "number": resource.NewBoolProperty(true),
		"special": resource.NewBoolProperty(true),
	}
	for k, v := range kv {
		m[resource.PropertyKey(k)] = resource.NewPropertyValue(v)
	}
	return m
}

func TestGenerateHonoursLengthMinimumsAndClasses(t *testing.T) {
	for i := 0; i < 200; i++ {
		in := inputs(map[string]any{"length": 16.0, "minUpper": 3.0, "minNumeric": 4.0, "minSpecial": 2.0,
			"overrideSpecial": "-_"})
		got, err := generate(in)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 16 {
			t.Fatalf("length %d, want 16: %q", len(got), got)
		}
		count := func(set string) int {
			n := 0
			for _, c := range got {
				if strings.ContainsRune(set, c) {
					n++
				}
			}
			return n
		}
		if count(charsUpper) < 3 || count(charsNumeric) < 4 || count("-_") < 2 {
			t.Fatalf("minimums not met in %q", got)
		}
		if count(charsUpper)+count(charsLower)+count(charsNumeric)+count("-_") != 16 {
			t.Fatalf("character outside the enabled classes in %q", got)
		}
	}
}

func TestGenerateWithoutSpecialOrNumeric(t *testing.T) {
	in := inputs(map[string]any{"length": 64.0, "special": false, "number": false})
	got, err := generate(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range got {
		if !strings.ContainsRune(charsUpper+charsLower, c) {
			t.Fatalf("unexpected %q in %q", c, got)
		}
	}
}

func TestGenerateRejectsNoClass(t *testing.T) {
	in := inputs(map[string]any{"length": 8.0, "special": false, "numeric": false, "upper": false, "lower": false})
	if _, err := generate(in); err == nil {
		t.Fatal("expected an error when every class is disabled")
	}
}

func TestGenerateIsRandom(t *testing.T) {
	a, _ := generate(inputs(map[string]any{"length": 32.0}))
	b, _ := generate(inputs(map[string]any{"length": 32.0}))
	if a == b {
		t.Fatalf("two 32-character values are equal: %q", a)
	}
}
