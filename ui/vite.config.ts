import { defineConfig } from "vite";

// Relative asset paths: the coordinator serves ui/dist at "/", but the files work from any
// prefix. `npm run dev` proxies the API to a local coordinator (TRAPLINE_API, default
// http://127.0.0.1:8470).
export default defineConfig({
  base: "./",
  build: { outDir: "dist", emptyOutDir: true, target: "es2022", sourcemap: false },
  server: {
    proxy: {
      "/api": { target: process.env.TRAPLINE_API ?? "http://127.0.0.1:8470", changeOrigin: false },
    },
  },
});
