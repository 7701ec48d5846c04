package wire

// Message type bytes: the first byte of every message after the startup
// phase. Frontend and backend types overlap ('S' is Sync from a client and
// ParameterStatus from a server; 'E', 'D', 'C' likewise), so each name says
// its direction. pgproto3 keeps its own copies unexported.
const (
	// Frontend (client to server).
	Bind            byte = 'B'
	CloseMessage    byte = 'C' // Close a statement or portal
	CopyData        byte = 'd' // both directions
	CopyDone        byte = 'c' // both directions
	CopyFail        byte = 'f'
	Describe        byte = 'D'
	Execute         byte = 'E'
	Flush           byte = 'H'
	FunctionCall    byte = 'F'
	Parse           byte = 'P'
	PasswordMessage byte = 'p' // password, SASLInitialResponse or SASLResponse
	Query           byte = 'Q'
	Sync            byte = 'S'
	Terminate       byte = 'X'

	// Backend (server to client).
	Authentication           byte = 'R'
	BackendKeyData           byte = 'K'
	BindComplete             byte = '2'
	CloseComplete            byte = '3'
	CommandComplete          byte = 'C'
	CopyBothResponse         byte = 'W'
	CopyInResponse           byte = 'G'
	CopyOutResponse          byte = 'H'
	DataRow                  byte = 'D'
	ErrorResponse            byte = 'E'
	NegotiateProtocolVersion byte = 'v'
	NoticeResponse           byte = 'N'
	NotificationResponse     byte = 'A'
	ParameterStatus          byte = 'S'
	ParseComplete            byte = '1'
	ReadyForQuery            byte = 'Z'
)

// Describe and Close name their target with one of these bytes.
const (
	TargetStatement byte = 'S'
	TargetPortal    byte = 'P'
)

// Transaction status bytes of ReadyForQuery.
const (
	TxIdle   byte = 'I' // not in a transaction block
	TxInTx   byte = 'T' // in a transaction block
	TxFailed byte = 'E' // in a failed transaction block
)

// Answers to SSLRequest and GSSENCRequest: one byte, not a message.
const (
	AcceptEncryption byte = 'S'
	RefuseEncryption byte = 'N'
)

// Startup-phase request codes (the int32 after a startup packet's length).
const (
	ProtocolVersion3  uint32 = 3 << 16
	SSLRequestCode    uint32 = 80877103
	GSSENCRequestCode uint32 = 80877104
	CancelRequestCode uint32 = 80877102
)

// Authentication request codes (the int32 body of an Authentication message).
const (
	AuthOK                uint32 = 0
	AuthCleartextPassword uint32 = 3
	AuthMD5Password       uint32 = 5
	AuthSASL              uint32 = 10
	AuthSASLContinue      uint32 = 11
	AuthSASLFinal         uint32 = 12
)
