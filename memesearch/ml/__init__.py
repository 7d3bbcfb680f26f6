"""Model layer: OCR, text embedders and image-to-text captioners behind small ABCs."""
