package flbconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// yamlFile reads a YAML configuration file: its includes (in place, relative to the including file's folder,
// as Fluent Bit does) and its pipeline's outputs, every document of the file in turn.
func (r *reader) yamlFile(path string) (err error) {
	data, err := r.load(path)
	if err != nil {
		return err
	}
	// The YAML library is not ours: a panic on odd input must not take Fluent Bit down with it.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: YAML reader failed: %v", path, p)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := r.yamlDocument(path, &doc); err != nil {
			return err
		}
	}
}

func (r *reader) yamlDocument(path string, doc *yaml.Node) error {
	for _, top := range mappingPairs(doc) {
		switch strings.ToLower(top.key.Value) {
		case "includes":
			for _, inc := range sequence(top.value) {
				if err := r.yamlInclude(path, inc); err != nil {
					return fmt.Errorf("%s:%d: include: %w", path, inc.Line, err)
				}
			}
		case "pipeline":
			for _, kind := range mappingPairs(top.value) {
				if strings.EqualFold(kind.key.Value, "outputs") {
					for _, out := range sequence(kind.value) {
						r.out = append(r.out, yamlSection(path, out))
					}
				}
			}
		}
	}
	return nil
}

func (r *reader) yamlInclude(path string, inc *yaml.Node) error {
	if inc.Kind != yaml.ScalarNode {
		return errors.New("not a file name")
	}
	name := inc.Value
	if !filepath.IsAbs(name) {
		name = filepath.Join(filepath.Dir(path), name)
	}
	if strings.Contains(name, "*") {
		return r.glob(name, r.yamlFile)
	}
	return r.yamlFile(name)
}

// yamlSection reads one entry of pipeline.outputs. Of a list value the first item is the one the plugin reads
// (Fluent Bit sets each, and the first wins); a map value (processors) is not a key of the output.
func yamlSection(path string, out *yaml.Node) Section {
	s := Section{File: path, Line: out.Line}
	for _, kv := range mappingPairs(out) {
		v := kv.value
		if v.Kind == yaml.SequenceNode {
			items := sequence(v)
			if len(items) == 0 {
				continue
			}
			v = items[0]
		}
		if v.Kind == yaml.ScalarNode {
			s.Props = append(s.Props, Prop{Key: trimSpace(kv.key.Value), Value: trimSpace(v.Value), File: path, Line: kv.key.Line})
		}
	}
	return s
}

type pair struct{ key, value *yaml.Node }

// mappingPairs returns the key/value pairs of a mapping (or of a document holding one); none for anything else.
func mappingPairs(n *yaml.Node) []pair {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	var pairs []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		pairs = append(pairs, pair{n.Content[i], n.Content[i+1]})
	}
	return pairs
}

// sequence returns the items of a sequence; none for anything else.
func sequence(n *yaml.Node) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		return nil
	}
	return n.Content
}
