"""tweetwatch training: data readers, gensim embeddings, the torch model, evaluation, ONNX export."""
