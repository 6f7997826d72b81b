package usage

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// MediaType is the media type of the registry's notification envelopes
// (distribution's notifications.EventsMediaType).
const MediaType = "application/vnd.docker.distribution.events.v2+json"

// Envelope is one notification body as the registry posts it: distribution
// v3 sends one event per envelope, older versions several; both are read.
type Envelope struct {
	Events []Event `json:"events"`
}

// Event is the part of distribution's notifications.Event the ledger reads.
type Event struct {
	ID        string    `json:"id"`
	Timestamp time.Time `json:"timestamp"`
	Action    string    `json:"action"`
	Target    struct {
		MediaType  string `json:"mediaType"`
		Digest     string `json:"digest"`
		Size       int64  `json:"size"`
		Repository string `json:"repository"`
		URL        string `json:"url"`
		Tag        string `json:"tag"`
		References []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		} `json:"references"`
	} `json:"target"`
	Request struct {
		ID        string `json:"id"`
		Addr      string `json:"addr"`
		Host      string `json:"host"`
		Method    string `json:"method"`
		UserAgent string `json:"useragent"`
	} `json:"request"`
	Actor struct {
		Name string `json:"name"`
	} `json:"actor"`
}

// DecodeEnvelope parses and checks an envelope: valid JSON, at least one
// event, and every event with an id, a timestamp, an action and a
// repository. A body that fails any of these is rejected whole, so that
// nothing of it is stored.
func DecodeEnvelope(body []byte) (*Envelope, error) {
	var env Envelope
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("decoding envelope: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decoding envelope: trailing data after the JSON object")
	}
	if len(env.Events) == 0 {
		return nil, fmt.Errorf("envelope has no events")
	}
	for i, ev := range env.Events {
		switch {
		case ev.ID == "":
			return nil, fmt.Errorf("event %d has no id", i)
		case ev.Timestamp.IsZero():
			return nil, fmt.Errorf("event %s has no timestamp", ev.ID)
		case ev.Action == "":
			return nil, fmt.Errorf("event %s has no action", ev.ID)
		case ev.Target.Repository == "":
			return nil, fmt.Errorf("event %s has no target repository", ev.ID)
		}
	}
	return &env, nil
}

// manifestMediaTypes are the media types of manifests; an event on anything
// else (a layer, a config) is a blob event, which the ledger does not keep.
var manifestMediaTypes = map[string]bool{
	"application/vnd.oci.image.manifest.v1+json":                true,
	"application/vnd.oci.image.index.v1+json":                   true,
	"application/vnd.docker.distribution.manifest.v2+json":      true,
	"application/vnd.docker.distribution.manifest.list.v2+json": true,
	"application/vnd.docker.distribution.manifest.v1+json":      true,
	"application/vnd.docker.distribution.manifest.v1+prettyjws": true,
	"application/vnd.oci.artifact.manifest.v1+json":             true,
}

func isIndexType(mt string) bool {
	return mt == "application/vnd.oci.image.index.v1+json" || mt == "application/vnd.docker.distribution.manifest.list.v2+json"
}

// isManifest says whether an event is about a manifest: its URL names
// /manifests/, or its media type is a manifest's.
func (ev *Event) isManifest() bool {
	return strings.Contains(ev.Target.URL, "/manifests/") || manifestMediaTypes[ev.Target.MediaType]
}
