package stacktest

import "encoding/base64"

// Dynamic is stmt as a DO block that EXECUTEs it from base64, so that the
// proxy's SQL guard cannot read it: what a test then sees refused is refused
// by PostgreSQL itself (privileges, ownership, row-level security), the wall
// isolation rests on. Security tests send each escape plain and through
// Dynamic.
func Dynamic(stmt string) string {
	b := base64.StdEncoding.EncodeToString([]byte(stmt))
	return "DO $stratum_dynamic$ BEGIN EXECUTE pg_catalog.convert_from(pg_catalog.decode('" + b +
		"', 'base64'), 'UTF8'); END $stratum_dynamic$"
}
