package server

import (
	"fmt"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger builds the process logger: format "json" (production) or
// "console" (dev, coloured levels only when stderr is a terminal), at level
// debug, info, warn or error.
func NewLogger(format, level string) (*zap.Logger, error) {
	var cfg zap.Config
	switch format {
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
		cfg.EncoderConfig = consoleEncoderConfig(isTerminal(os.Stderr))
	case "json", "":
		cfg = zap.NewProductionConfig()
	default:
		return nil, fmt.Errorf("log format %q: use json or console", format)
	}
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	return cfg.Build()
}

// isTerminal reports whether f is a character device (a terminal), the
// standard library's way without a terminal package.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// consoleEncoderConfig is the dev console's encoding: levels in colour only
// for a terminal, so logs piped to a file or a CI log carry no escape codes.
func consoleEncoderConfig(tty bool) zapcore.EncoderConfig {
	ec := zap.NewDevelopmentEncoderConfig()
	ec.EncodeLevel = zapcore.CapitalLevelEncoder
	if tty {
		ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
	}
	return ec
}
