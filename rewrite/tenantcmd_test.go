package rewrite

import (
	"errors"
	"testing"
)

func TestClassifyTenantCommand(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want TenantCommand
		err  error
	}{
		{"SET stratum.tenant = 'client_beta'", TenantCommand{SetTenant, "client_beta"}, nil},
		{"set STRATUM.TENANT to client_beta;", TenantCommand{SetTenant, "client_beta"}, nil},
		{"SET SESSION stratum.tenant = '6f1c2a7e-0000-4000-8000-000000000001'", TenantCommand{SetTenant, "6f1c2a7e-0000-4000-8000-000000000001"}, nil},
		{"  RESET stratum.tenant ", TenantCommand{Kind: ResetTenant}, nil},
		{"SET stratum.tenant TO DEFAULT", TenantCommand{Kind: ResetTenant}, nil},
		{"SHOW stratum.tenant", TenantCommand{Kind: ShowTenant}, nil},
		{"show \"stratum.tenant\"", TenantCommand{Kind: ShowTenant}, nil},
		{"SET stratum.tenant = 'a'; SELECT 1", TenantCommand{}, ErrNotAlone},
		{"SELECT 1; SHOW stratum.tenant", TenantCommand{}, ErrNotAlone},
		{"SET LOCAL stratum.tenant = 'a'", TenantCommand{}, ErrLocal},
		{"SET stratum.tenant = 'a', 'b'", TenantCommand{}, ErrBadValue},
		{"SET stratum.tenant = 42", TenantCommand{}, ErrBadValue},
		{"SELECT 'stratum.tenant'", TenantCommand{}, nil},
		{"SET stratum.other = 'x'", TenantCommand{}, nil},
		{"SELECT * FROM stratum_orders", TenantCommand{}, nil},
		{"SELEC stratum.tenant", TenantCommand{}, nil},
	} {
		got, err := ClassifyTenantCommand(tc.sql)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("%q: got %+v, %v; want %+v, %v", tc.sql, got, err, tc.want, tc.err)
		}
	}
}

func TestMentionsTenantSetting(t *testing.T) {
	for sql, want := range map[string]bool{
		"select 1":                  false,
		"SET STRATUM.tenant = 'x'":  true,
		"show stratum.tenant":       true,
		"insert into orders values": false,
		"strat":                     false,
	} {
		if got := MentionsTenantSetting([]byte(sql)); got != want {
			t.Errorf("%q: got %v", sql, got)
		}
	}
}
