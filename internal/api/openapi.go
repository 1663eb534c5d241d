package api

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3 document of this API; TestOpenAPICoversRoutes
// keeps it in step with routes().
//
//go:embed openapi.json
var openAPI []byte

func handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
