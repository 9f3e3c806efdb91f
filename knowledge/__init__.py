"""Knowledge base: document loaders, chunking, embeddings, the vector and lexical stores, search, Inform."""
