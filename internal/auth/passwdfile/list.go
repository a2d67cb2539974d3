package passwdfile

import (
	"context"
	"maps"
	"slices"
)

// List returns the names of every user in the file, sorted: what the
// expiry sweep walks.
func (d *DB) List(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.refresh()
	t := d.data.Load()
	return slices.Sorted(maps.Keys(t.users)), nil
}
