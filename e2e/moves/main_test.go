package moves

import (
	"testing"

	"github.com/stratum-hq/stratum-proxy/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
