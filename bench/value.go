package main

import "strconv"

// Product is the value every library caches: a struct of about 200 bytes
// once encoded (201 bytes of JSON for a five-digit id, see
// TestProductEncodedSize). It carries both json and msgpack tags, so that
// every library encodes it with its default codec under the same names:
// tiercache's redisstore and sturdyc with encoding/json, go-redis/cache with
// msgpack.
type Product struct {
	ID          int64    `json:"id" msgpack:"id"`
	SKU         string   `json:"sku" msgpack:"sku"`
	Name        string   `json:"name" msgpack:"name"`
	Description string   `json:"description" msgpack:"description"`
	PriceCents  int64    `json:"price_cents" msgpack:"price_cents"`
	Currency    string   `json:"currency" msgpack:"currency"`
	Stock       int32    `json:"stock" msgpack:"stock"`
	Tags        []string `json:"tags" msgpack:"tags"`
	Version     int64    `json:"version" msgpack:"version"`
}

// productTags is shared by every Product: no library modifies a value.
var productTags = []string{"kitchen", "steel", "sale"}

// newProduct returns the Product with id id at version version.
func newProduct(id int, version int64) Product {
	n := strconv.Itoa(id)
	return Product{
		ID:          int64(id),
		SKU:         "SKU-" + n,
		Name:        "Product " + n,
		Description: "A stainless steel kettle, 1.7 litres.",
		PriceCents:  int64(1000 + id%9000),
		Currency:    "EUR",
		Stock:       int32(id % 500),
		Tags:        productTags,
		Version:     version,
	}
}
