// Listing the blob store of an object store in few requests.

package gc

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// flatLister lists every object whose name starts with the blob store's
// (blobs/sha256/) followed by first, in name order, through a store's own
// client: fn gets each object's name relative to blobs/sha256/, its size
// and its modification time.
type flatLister func(ctx context.Context, first string, fn func(rel string, size int64, mod time.Time)) error

// flatListerOf is the flat lister of S3 and Azure storages whose client
// gc reaches (S3PlaceOf, AzurePlaceOf); nil for any other.
func flatListerOf(d storagedriver.StorageDriver) flatLister {
	root := pathFor(blobsSpec{digest.SHA256})
	if p := S3PlaceOf(d); p != nil {
		base := p.Key(root) + "/"
		return func(ctx context.Context, first string, fn func(string, int64, time.Time)) error {
			in := &s3.ListObjectsV2Input{Bucket: aws.String(p.Bucket), Prefix: aws.String(base + first)}
			err := p.Client.ListObjectsV2PagesWithContext(ctx, in, func(out *s3.ListObjectsV2Output, _ bool) bool {
				for _, o := range out.Contents {
					fn(strings.TrimPrefix(aws.StringValue(o.Key), base), aws.Int64Value(o.Size), aws.TimeValue(o.LastModified))
				}
				return ctx.Err() == nil
			})
			if err == nil {
				err = ctx.Err()
			}
			return err
		}
	}
	if p := AzurePlaceOf(d); p != nil {
		base := p.dirPrefix(root)
		return func(ctx context.Context, first string, fn func(string, int64, time.Time)) error {
			return p.eachBlob(ctx, base+first, func(name string, size int64, mod time.Time) error {
				fn(strings.TrimPrefix(name, base), size, mod)
				return nil
			})
		}
	}
	return nil
}

// listBlobsFlat is listBlobs on an object store: the blob store's prefix
// directories (one delimited listing), then one flat listing per first
// character of theirs, opts.Jobs at a time (S3 gives 1,000 names a
// request, Azure 5,000). A walk of each two-character directory costs a
// request however few blobs it holds: 256 for a store of a few thousand
// blobs, where this sends 17; at millions of blobs both send one request
// per page of names, in as many parallel listings as --jobs takes. The
// result is the walk's (walkBlobs): one sorted slice per prefix directory,
// in order, of the blobs whose data file is <dir>/<hex>/data.
func listBlobsFlat(ctx context.Context, d storagedriver.StorageDriver, flat flatLister, opts Options) (blobList, error) {
	bar := opts.Progress.Count(-1, "reading blobs")
	defer bar.Done()
	root := pathFor(blobsSpec{digest.SHA256})
	prefixes, err := blobPrefixes(ctx, d)
	if err != nil {
		return nil, err
	}
	// The prefix directories by their first character: one listing each.
	var firsts []string
	byFirst := map[string][]string{}
	for _, pre := range prefixes {
		name := path.Base(pre)
		if _, ok := byFirst[name[:1]]; !ok {
			firsts = append(firsts, name[:1])
		}
		byFirst[name[:1]] = append(byFirst[name[:1]], name)
	}
	found := make([]map[string][]blobInfo, len(firsts))
	err = forEach(ctx, opts.Jobs, len(firsts), func(i int) error {
		dirs := map[string][]blobInfo{}
		for _, name := range byFirst[firsts[i]] {
			dirs[name] = nil
		}
		err := flat(ctx, firsts[i], func(rel string, size int64, mod time.Time) {
			parts := strings.Split(rel, "/") // dir/hex/data
			if len(parts) != 3 || parts[2] != "data" {
				return
			}
			if _, listed := dirs[parts[0]]; !listed {
				return // created since the directories were listed
			}
			if s, ok := sumOfHex(parts[1]); ok {
				dirs[parts[0]] = append(dirs[parts[0]], blobInfo{s: s, size: size, mod: nanos(mod)})
				bar.Add(1)
			}
		})
		if err != nil {
			return fmt.Errorf("listing blobs under %s/%s: %w", root, firsts[i], err)
		}
		found[i] = dirs
		return nil
	})
	if err != nil {
		return nil, err
	}
	first := map[string]int{}
	for i, c := range firsts {
		first[c] = i
	}
	out := make(blobList, len(prefixes))
	for i, pre := range prefixes {
		name := path.Base(pre)
		out[i] = sortBlobs(found[first[name[:1]]][name])
	}
	return out, nil
}
