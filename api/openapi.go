package api

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"gopkg.in/yaml.v3"
)

// openapiYAML is the API reference; docs/openapi.yaml links to this file.
//
//go:embed openapi.yaml
var openapiYAML []byte

// openapiJSON is the same document as JSON, converted once at start-up.
var openapiJSON = func() []byte {
	var doc any
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		panic(fmt.Sprintf("api/openapi.yaml: %v", err))
	}
	b, err := json.Marshal(doc)
	if err != nil {
		panic(fmt.Sprintf("api/openapi.yaml: %v", err))
	}
	return b
}()

func (s *Server) openapi(c *gin.Context) error {
	c.Data(http.StatusOK, "application/json", openapiJSON)
	return nil
}
