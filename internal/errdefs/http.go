package errdefs

import "net/http"

// HTTPStatus is the one mapping of error classes onto HTTP statuses.
func HTTPStatus(c *Class) int {
	switch c {
	case ErrInvalidArgument:
		return http.StatusBadRequest
	case ErrUnauthorized:
		return http.StatusUnauthorized
	case ErrForbidden:
		return http.StatusForbidden
	case ErrNotFound:
		return http.StatusNotFound
	case ErrConflict:
		return http.StatusConflict
	case ErrTooLarge:
		return http.StatusRequestEntityTooLarge
	case ErrExhausted:
		return http.StatusTooManyRequests
	case ErrNoSpace:
		return http.StatusInsufficientStorage
	case ErrMethod:
		return http.StatusMethodNotAllowed
	case ErrUnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	case ErrUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
