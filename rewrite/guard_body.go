package rewrite

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v5"
)

// This file follows SQL into the code a statement carries: DO blocks and
// CREATE FUNCTION / CREATE PROCEDURE bodies. PL/pgSQL bodies are parsed with
// pg_query's PL/pgSQL parser and every embedded SQL statement and expression
// is checked like top-level SQL; string constants in them are checked as SQL
// too, since EXECUTE runs strings. What cannot be followed is judged on its
// words, conservatively:
//   - PL/pgSQL that runs dynamic SQL (EXECUTE, FOR ... IN EXECUTE, OPEN ... FOR
//     EXECUTE, RETURN QUERY EXECUTE) and mentions role, session_authorization,
//     set_config, stratum or the lexer settings anywhere is refused: the string
//     it runs may be assembled from pieces;
//   - a body in any other language (plpython, plperl, ...) that mentions them
//     is refused;
//   - a PL/pgSQL body pg_query cannot compile alone (an undeclared variable,
//     say) falls back to the token rules of guard_scan.go, which may refuse an
//     innocent "UPDATE t SET role = ..." inside it.

// enter returns a checker for code nested in c (a body or a dynamic string),
// or nil after refusing when nesting is too deep to inspect.
func (c *checker) enter(where string) *checker {
	if c.depth+1 > maxGuardDepth {
		c.refuse("nesting_too_deep", "SQL nested this deep in DO blocks, function bodies or dynamic strings", whyUnseen)
		return nil
	}
	return &checker{where: where, depth: c.depth + 1, dynamic: c.dynamic}
}

// absorb takes sub's refusal and, for code that runs now (a DO block), its
// session resets.
func (c *checker) absorb(sub *checker, runsNow bool) {
	if sub.deny != nil && c.deny == nil {
		c.deny = sub.deny
	}
	if runsNow && sub.resets {
		c.resets = true
	}
}

// doStmt checks a DO block's body.
func (c *checker) doStmt(d *pg_query.DoStmt) {
	lang, body := "plpgsql", ""
	for _, a := range d.Args {
		de := a.GetDefElem()
		switch de.GetDefname() {
		case "language":
			lang = de.GetArg().GetString_().GetSval()
		case "as":
			body = de.GetArg().GetString_().GetSval()
		}
	}
	sub := c.enter("a DO block")
	if sub == nil {
		return
	}
	sub.body(lang, body)
	c.absorb(sub, true)
}

// createFunction checks the body of CREATE FUNCTION or CREATE PROCEDURE given
// as a string (AS '...'); a BEGIN ATOMIC or RETURN body is part of the parse
// tree and walked with it.
func (c *checker) createFunction(f *pg_query.CreateFunctionStmt) {
	lang := ""
	var texts []string
	for _, o := range f.Options {
		de := o.GetDefElem()
		switch de.GetDefname() {
		case "language":
			lang = de.GetArg().GetString_().GetSval()
		case "as":
			for _, it := range de.GetArg().GetList().GetItems() {
				texts = append(texts, it.GetString_().GetSval())
			}
		}
	}
	if len(texts) == 0 {
		return
	}
	where := "a function body"
	if f.IsProcedure {
		where = "a procedure body"
	}
	sub := c.enter(where)
	if sub == nil {
		return
	}
	for _, t := range texts {
		sub.body(lang, t)
	}
	c.absorb(sub, false)
}

// body checks code in the given language.
func (c *checker) body(lang, text string) {
	switch guardLower(lang) {
	case "plpgsql":
		c.dynamic = true
		c.plpgsqlBody(text)
	case "sql":
		c.dynamic = false
		c.sqlText(text)
	default:
		if mentionsGuardedName(text) {
			c.refuse("foreign_language_body",
				"a "+lang+" body that mentions role, session_authorization, set_config, stratum or pg_settings", whyUnseen)
		}
	}
}

// sqlText checks SQL that is not top-level: parsed statement by statement, or
// by tokens when it does not parse.
func (c *checker) sqlText(text string) {
	tree, err := pg_query.Parse(text)
	if err != nil {
		c.scanText(text)
		return
	}
	for _, raw := range tree.Stmts {
		if c.deny != nil {
			return
		}
		c.statement(raw.GetStmt())
	}
}

// dynamicString checks a string constant of PL/pgSQL code as the SQL it may
// become. A string in which NeedsFullCheck finds nothing cannot hide a refused
// statement and is skipped.
func (c *checker) dynamicString(s string) {
	if !NeedsFullCheck([]byte(s)) {
		return
	}
	sub := c.enter(c.where)
	if sub == nil {
		return
	}
	sub.sqlText(s)
	c.absorb(sub, false)
}

// plpgsqlBody checks a PL/pgSQL body.
func (c *checker) plpgsqlBody(text string) {
	tag := guardDollarTag(text)
	js, err := pg_query.ParsePlPgSqlToJSON(
		"CREATE FUNCTION stratum_guard_body() RETURNS void LANGUAGE plpgsql AS " + tag + text + tag)
	var doc any
	if err == nil {
		err = json.Unmarshal([]byte(js), &doc)
	}
	if err != nil {
		c.scanText(text)
		if guardHasWord(text, "execute") && mentionsGuardedName(text) {
			c.refuseDynamicSQL()
		}
		return
	}
	units, dynamic := plpgsqlUnits(doc)
	for _, u := range units {
		if c.deny != nil {
			return
		}
		c.plpgsqlUnit(u)
	}
	if dynamic && mentionsGuardedName(text) {
		c.refuseDynamicSQL()
	}
}

func (c *checker) refuseDynamicSQL() {
	c.refuse("dynamic_sql",
		"EXECUTE of dynamic SQL in code that mentions role, session_authorization, set_config, stratum or pg_settings", whyUnseen)
}

// plpgsqlUnit is one SQL statement or expression of a PL/pgSQL body.
type plpgsqlUnit struct {
	query string
	mode  int // PostgreSQL's RawParseMode: 0 statement, 2 expression, 3-5 assignment
}

// plpgsqlUnits collects the SQL of a PL/pgSQL parse tree (pg_query's JSON),
// in a deterministic order, and reports whether it runs dynamic SQL.
func plpgsqlUnits(doc any) (units []plpgsqlUnit, dynamic bool) {
	var visit func(v any)
	visit = func(v any) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				visit(e)
			}
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				switch k {
				case "PLpgSQL_expr":
					if e, ok := x[k].(map[string]any); ok {
						q, _ := e["query"].(string)
						mode, _ := e["parseMode"].(float64)
						units = append(units, plpgsqlUnit{query: q, mode: int(mode)})
					}
					continue
				case "PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors", "dynquery":
					dynamic = true
				}
				visit(x[k])
			}
		}
	}
	visit(doc)
	return units, dynamic
}

// plpgsqlUnit checks one unit: statements as they are, expressions as
// "SELECT expr", assignments "target := expr" by their expression.
func (c *checker) plpgsqlUnit(u plpgsqlUnit) {
	q := u.query
	switch {
	case u.mode == 0:
	case u.mode == 2:
		q = "SELECT " + q
	default:
		q = "SELECT " + assignedExpr(q)
	}
	if tree, err := pg_query.Parse(q); err == nil {
		for _, raw := range tree.Stmts {
			if c.deny != nil {
				return
			}
			c.statement(raw.GetStmt())
		}
		return
	}
	c.scanText(u.query)
}

// assignedExpr returns the expression of "target := expr" (or "target =
// expr"), or q itself.
func assignedExpr(q string) string {
	res, err := pg_query.Scan(q)
	if err != nil {
		return q
	}
	for _, t := range res.Tokens {
		if t.Token == pg_query.Token_COLON_EQUALS || t.Token == pg_query.Token_ASCII_61 {
			if int(t.End) <= len(q) {
				return q[t.End:]
			}
			break
		}
	}
	return q
}

// guardDollarTag returns a dollar-quote delimiter that does not occur in body.
func guardDollarTag(body string) string {
	for i := 0; ; i++ {
		tag := "$stratum_guard" + strconv.Itoa(i) + "$"
		if !strings.Contains(body, tag) {
			return tag
		}
	}
}
