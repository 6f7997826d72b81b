// Listing the blob store of an S3 storage in few requests.

package gc

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// listS3Blobs is listBlobs on S3, through the driver's own client: the
// blob store's prefix directories (one delimited listing), then one flat
// listing per first character of theirs, 1,000 keys a request, opts.Jobs
// at a time. The driver's Walk of each two-character directory costs a
// request however few blobs it holds: 256 for a store of a few thousand
// blobs, where this sends 17; at millions of blobs both send one request
// per 1,000 keys, in as many parallel listings as --jobs takes. The result
// is the walk's (walkBlobs): one sorted slice per prefix directory, in
// order, the blobs whose data file is <dir>/<hex>/data.
func listS3Blobs(ctx context.Context, d storagedriver.StorageDriver, p *S3Place, opts Options) (blobList, error) {
	bar := opts.Progress.Count(-1, "reading blobs")
	defer bar.Done()
	root := pathFor(blobsSpec{digest.SHA256})
	prefixes, err := d.List(ctx, root)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing blobs: %w", err)
	}
	// The prefix directories by their first character: one listing each.
	byFirst := map[string][]string{}
	for _, pre := range prefixes {
		name := path.Base(pre)
		byFirst[name[:1]] = append(byFirst[name[:1]], name)
	}
	firsts := make([]string, 0, len(byFirst))
	for c := range byFirst {
		firsts = append(firsts, c)
	}
	sort.Strings(firsts)
	base := p.Key(root) + "/"
	found := make([]map[string][]blobInfo, len(firsts))
	err = forEach(ctx, opts.Jobs, len(firsts), func(i int) error {
		dirs := map[string][]blobInfo{}
		for _, name := range byFirst[firsts[i]] {
			dirs[name] = nil
		}
		in := &s3.ListObjectsV2Input{Bucket: aws.String(p.Bucket), Prefix: aws.String(base + firsts[i])}
		err := p.Client.ListObjectsV2PagesWithContext(ctx, in, func(out *s3.ListObjectsV2Output, _ bool) bool {
			for _, o := range out.Contents {
				// dir/hex/data under blobs/sha256/
				rel := strings.TrimPrefix(aws.StringValue(o.Key), base)
				parts := strings.Split(rel, "/")
				if len(parts) != 3 || parts[2] != "data" {
					continue
				}
				if _, listed := dirs[parts[0]]; !listed {
					continue // created since the directories were listed
				}
				s, ok := sumOfHex(parts[1])
				if !ok {
					continue
				}
				dirs[parts[0]] = append(dirs[parts[0]], blobInfo{s: s, size: aws.Int64Value(o.Size), mod: nanos(aws.TimeValue(o.LastModified))})
				bar.Add(1)
			}
			return ctx.Err() == nil
		})
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("listing blobs under %s: %w", base+firsts[i], err)
		}
		found[i] = dirs
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(prefixes)
	out := make(blobList, len(prefixes))
	first := map[string]int{}
	for i, c := range firsts {
		first[c] = i
	}
	for i, pre := range prefixes {
		name := path.Base(pre)
		out[i] = sortBlobs(found[first[name[:1]]][name])
	}
	return out, nil
}
