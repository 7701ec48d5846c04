-- A tenant may override the proxy's pool mode (session or transaction).
ALTER TABLE tenants ADD COLUMN pool_mode text CHECK (pool_mode IN ('session', 'transaction'));
