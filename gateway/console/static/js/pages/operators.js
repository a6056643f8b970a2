// Being written: this page comes in a later commit.
import { h } from "../dom.js";

export default {
  id: "operators",
  title: "Operators",
  scopes: ["ops"],
  render() {
    return h("h1", {}, "Operators");
  },
};
